"""`wv train --init PATH`: a new run's first weights from another run's checkpoint or a plain weights file.

    source   a wv checkpoint (`wv train`, `wv pretrain`: its `model`, and its `topic_head` when the new
             run has one), or a plain state dict (torchvision / timm weights; a .safetensors file; a
             dict wrapping it as {"state_dict": ...} or {"model": ...}; keys with or without "module.")
    match    a tensor of the new model is loaded when the source has one of its name and shape (the
             source's keys are tried as they are and without one wrapper prefix, "module.", "model."
             ...: whichever matches more); every other tensor keeps its fresh, seeded initialisation
    head     the class head is re-initialised unless the source is a `wv train` checkpoint of the very same
             class list (then it carries on: the same task at a new image size or schedule); a `wv pretrain`
             head always starts afresh (WeChat: "initializing model weights except the last linear layer")

The counts (loaded, reinitialised: the new model's tensors not loaded; ignored: the source's tensors not
used) go into the run's first line, its summary and its checkpoint. Nothing of the body loaded (another
architecture) is one sentence. A resumed run never reads the file again: its checkpoint holds the weights.
"""

from pathlib import Path

import torch
from torch import nn

from wv.errors import WvError
from wv.models import FORMAT, file_sha256, head_name

WRAPPERS = ("state_dict", "model", "model_state", "module", "net")
PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.", "body.", "encoder.", "base_model.")


def read_weights(path) -> tuple[dict, dict | None]:
    """(the source's model tensors by name, the wv checkpoint dict or None for a plain weights file)."""
    path = Path(path)
    if not path.is_file():
        raise WvError(f"--init {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path), None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a weights file
        raise WvError(f"--init {path} is not a weights file torch can load weights-only ({type(error).__name__})") from None
    if isinstance(loaded, dict) and loaded.get("format") == FORMAT:
        if not isinstance(loaded.get("model"), dict):
            raise WvError(f"--init {path} is a damaged wv checkpoint: it has no model weights")
        return tensors_of(loaded["model"]), loaded
    for key in WRAPPERS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict) and tensors_of(loaded[key]):
            loaded = loaded[key]
            break
    state = tensors_of(loaded) if isinstance(loaded, dict) else {}
    if not state:
        raise WvError(f"--init {path} holds no named tensors (neither a wv checkpoint nor a state dict)")
    return state, None


def read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WvError(f"--init {path} is not a readable safetensors file ({str(error)[:120]})") from None


def tensors_of(state: dict) -> dict:
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def best_renaming(source: dict, target: dict) -> dict:
    """The source's tensors under the names (as they are, or without one wrapper prefix) that match the most target names."""
    candidates = [source] + [{k.removeprefix(p): v for k, v in source.items() if k.startswith(p)} for p in PREFIXES]
    return max(candidates, key=lambda c: sum(k in target for k in c))


def init_weights(model: nn.Module, path, classes: list[str], topic_head: nn.Module | None = None) -> dict:
    """Load the matching tensors of `path` into `model` (the bare classifier) and `topic_head` in place; the report."""
    source, checkpoint = read_weights(path)
    same_classes = checkpoint is not None and list(checkpoint.get("classes") or []) == list(classes) and class_task(checkpoint)
    head = head_name(model) + "."
    loaded = load_matching(model, source, keep_head=same_classes, head=head)
    used = set(loaded)
    if topic_head is not None and checkpoint is not None and isinstance(checkpoint.get("topic_head"), dict):
        topic_source = tensors_of(checkpoint["topic_head"])
        topic_loaded = load_matching(topic_head, topic_source, keep_head=True, head="")
        loaded += [f"topic_head.{k}" for k in topic_loaded]
        ignored_topic = len(topic_source) - len(topic_loaded)
    else:
        ignored_topic = len(tensors_of(checkpoint["topic_head"])) if checkpoint is not None and isinstance(checkpoint.get("topic_head"), dict) else 0
    targets = len(model.state_dict()) + (len(topic_head.state_dict()) if topic_head is not None else 0)
    body = [k for k in model.state_dict() if not k.startswith(head)]
    body_loaded = sum(1 for k in used if not k.startswith(head))
    if body and not body_loaded:
        kind = f"a {checkpoint.get('arch')} checkpoint" if checkpoint is not None else "its tensors"
        raise WvError(f"--init {path}: no tensor of it fits this model ({kind}; names or shapes differ): give weights of the same architecture")
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "kind": "wv checkpoint" if checkpoint is not None else "state dict",
        "source_arch": checkpoint.get("arch") if checkpoint is not None else None,
        "loaded": len(loaded),
        "reinitialised": targets - len(loaded),
        "ignored": len(source) - len(used) + ignored_topic,
        "body_loaded": body_loaded,
        "body_tensors": len(body),
        "head": "loaded" if any(k.startswith(head) for k in used) else "reinitialised",
    }


def class_task(checkpoint: dict) -> bool:
    """Whether a wv checkpoint was trained on the class task (`wv train`), not a pre-training task."""
    task = checkpoint.get("task") or {"name": "class"}
    return isinstance(task, dict) and task.get("name", "class") == "class"


def load_matching(module: nn.Module, source: dict, keep_head: bool, head: str) -> list[str]:
    """Copy the source's tensors of the same name and shape into `module` (the head's only with `keep_head`); the names loaded."""
    target = module.state_dict()
    source = best_renaming(source, target)
    state, loaded = dict(target), []
    for name, tensor in target.items():
        if head and name.startswith(head) and not keep_head:
            continue
        if name in source and source[name].shape == tensor.shape:
            state[name] = source[name].to(dtype=tensor.dtype)
            loaded.append(name)
    module.load_state_dict(state)
    return loaded


def describe(report: dict) -> str:
    """The run's one line about its first weights."""
    return (
        f"init from {report['path']} ({report['kind']}{', ' + report['source_arch'] if report.get('source_arch') else ''}): "
        f"{report['loaded']} tensors loaded ({report['body_loaded']} of the body's {report['body_tensors']}), "
        f"{report['reinitialised']} re-initialised (the class head {report['head']}), {report['ignored']} of the file ignored"
    )
