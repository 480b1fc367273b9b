"""Image models, in one place for curate and train: classifiers by name, the `wv train` checkpoint format
that `wv embed`, `wv score confidence` and `wv eval` read, and an image model loaded by spec (a wv
checkpoint, or an open_clip model) with its evaluation preprocessing.

Architectures: wv's own names (`ARCHS`: torchvision's resnet18/34/50 and densenet121, and tinycnn) and
any timm model name (`timm.list_models()`, or `timm:NAME` for timm's model of a name wv keeps for
torchvision). Nothing is ever downloaded: every model starts from random weights, and pretrained
weights come only from a file (`wv train --init`). A timm model's default input (size, mean, std)
is its pretrained configuration's.

A checkpoint is one `torch.save`d dict (loaded with weights_only=True, so it holds only tensors and
plain Python values):

    format       "wv-checkpoint/1"
    arch         an architecture name build_model knows ("resnet50", "tinycnn", "seresnet50" ...)
    num_classes  outputs of the classifier
    classes      the synset of each output, in order (["n01440764", ...])
    model        the model's state_dict (of the bare model, not a DDP wrapper)
    input        {"size": pixels, "mean": [r, g, b], "std": [r, g, b]}: the evaluation preprocessing
    arch_options optional: keyword arguments build_model passed to the constructor ({"width": 32})
    ...          whatever else the trainer keeps ("optimizer", "sampler", "step" ...)
"""

import difflib
import fnmatch
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from wv.atomic import atomic_path
from wv.errors import WvError

FORMAT = "wv-checkpoint/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "densenet121")
ARCHS = (*TORCHVISION_ARCHS, "tinycnn")
DEFAULT_SIZE = {"tinycnn": 64}  # torchvision's: 224; timm's: their pretrained configuration's
TIMM_PREFIX = "timm:"


class TinyCNN(nn.Module):
    """Four conv blocks and a linear classifier: trains on CPU in seconds (tests, demo)."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        channels = [3, width // 2, width, width * 2, width * 2]
        blocks = []
        for c_in, c_out in zip(channels, channels[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def build_model(arch: str, num_classes: int, **kw) -> nn.Module:
    """A freshly initialised classifier (no downloaded weights); `kw` goes to the constructor."""
    if num_classes < 1:
        raise WvError("a model needs at least one class")
    if arch == "tinycnn":
        return TinyCNN(num_classes, **kw)
    if arch in TORCHVISION_ARCHS:
        import torchvision

        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, **kw)
    name = check_arch(arch)
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise WvError(f"timm cannot build {name} with {num_classes} classes{f' and {kw}' if kw else ''}: {str(error).splitlines()[0][:160] if str(error) else type(error).__name__}") from None


def check_input_size(model: nn.Module, arch: str, size: int) -> None:
    """A timm model that cannot take `size`-pixel images (Inception's stem needs 75 and more): one sentence
    now, not a failure at the first batch. One image through the model in eval mode, without gradient."""
    if not timm_name(arch):
        return
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    except (RuntimeError, ValueError, AssertionError) as error:
        raise WvError(f"{arch} cannot take {size}-pixel images ({str(error).splitlines()[0][:120] if str(error) else type(error).__name__}); give a larger --image-size") from None
    finally:
        model.train(training)


def timm_name(arch: str) -> str | None:
    """The timm model name `arch` stands for (None for wv's own names and unknown names)."""
    if arch in ARCHS:
        return None
    import timm

    name = arch.removeprefix(TIMM_PREFIX)
    return name if timm.is_model(name) else None


def check_arch(arch: str) -> str:
    """`arch` itself, or its timm name; one sentence naming close names for an unknown one."""
    if arch in ARCHS:
        return arch
    name = timm_name(arch)
    if name:
        return name
    close = difflib.get_close_matches(arch.removeprefix(TIMM_PREFIX), list_archs(), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise WvError(f"unknown architecture {arch!r}; {hint}`wv models` lists them ({', '.join(ARCHS)} or a timm name)")


def list_archs(pattern: str | None = None) -> list[str]:
    """wv's own names, then timm's (wildcards as in `timm.list_models`: '*resnest*')."""
    import timm

    own = [a for a in ARCHS if not pattern or fnmatch.fnmatch(a, pattern)]
    return own + [f"{TIMM_PREFIX}{n}" if n in ARCHS else n for n in timm.list_models(pattern or "")]


def model_table(pattern: str | None = None) -> list[dict]:
    """`wv models`: every architecture name (matching `pattern`) with where it comes from and its default input size."""
    rows = []
    for name in list_archs(pattern):
        source = "wv" if name == "tinycnn" else "torchvision" if name in TORCHVISION_ARCHS else "timm"
        rows.append({"name": name, "source": source, "size": default_input(name)["size"]})
    return rows


def default_input(arch: str) -> dict:
    name = timm_name(arch)
    if name:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
        if cfg is not None:
            return {"size": int(cfg.input_size[-1]), "mean": [float(x) for x in cfg.mean], "std": [float(x) for x in cfg.std]}
    return {"size": DEFAULT_SIZE.get(arch, 224), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def size_options(arch: str, size: int) -> dict:
    """Constructor arguments a model needs for `size`: a timm model of a fixed input size (a ViT) is built for it."""
    name = timm_name(arch)
    if not name:
        return {}
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return {"img_size": size} if cfg is not None and cfg.fixed_input_size and size != cfg.input_size[-1] else {}


def save_checkpoint(path, model: nn.Module, arch: str, num_classes: int, classes: list, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically. `extra` adds keys (optimizer, step ...; `input` overrides the default)."""
    if len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names for {num_classes} outputs")
    model = getattr(model, "module", model)  # a DDP wrapper saves its bare model
    checkpoint = {"format": FORMAT, "arch": arch, "num_classes": int(num_classes), "classes": list(classes), "input": default_input(arch), **(extra or {}), "model": model.state_dict()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict, checked to be a wv checkpoint (no model is built)."""
    path = Path(path)
    if not path.is_file():
        raise WvError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise WvError(f"{path} is not a wv checkpoint (torch cannot load it weights-only: {type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise WvError(f"{path} is not a wv checkpoint (no format {FORMAT!r}); make one with `wv train`")
    missing = [k for k in ("arch", "num_classes", "classes", "model") if k not in checkpoint]
    if missing:
        raise WvError(f"{path} is a damaged wv checkpoint: it lacks {', '.join(missing)}")
    return checkpoint


def load_checkpoint(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, checkpoint dict). WvError on a missing file, a non-wv file, an unknown arch."""
    checkpoint = read_checkpoint(path, map_location)
    model = build_model(checkpoint["arch"], checkpoint["num_classes"], **checkpoint.get("arch_options", {}))
    state = {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise WvError(f"{path}: the weights do not fit a {checkpoint['arch']} with {checkpoint['num_classes']} classes ({str(error).splitlines()[0][:120]})") from None
    return model.to(map_location).eval(), checkpoint


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The model's class head: a timm model's get_classifier(), else the last nn.Linear registered (the
    classifier of torchvision's models and tinycnn)."""
    model = getattr(model, "module", model)
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if head is not None or not linears:
        raise WvError(f"{type(model).__name__} has no linear classifier to take penultimate features from")
    return linears[-1]


def head_name(model: nn.Module) -> str:
    """The qualified name of the class head's module ("fc", "classifier", "head.fc" ...)."""
    head = classifier_layer(model)
    return next(name for name, module in getattr(model, "module", model).named_modules() if module is head)


def penultimate(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The input of the final classifier layer for a batch of images (the model's image features)."""
    captured = []
    hook = classifier_layer(model).register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        model(images)
    finally:
        hook.remove()
    return captured[-1].flatten(1)


def eval_transform(input_spec: dict):
    """Resize the short side, centre-crop, normalise: the evaluation preprocessing of a checkpoint."""
    from torchvision import transforms as T

    size = int(input_spec["size"])
    return T.Compose(
        [
            T.Lambda(to_rgb),
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(input_spec["mean"], input_spec["std"]),
        ]
    )


def to_rgb(image):
    return image.convert("RGB")


# -- an image model by spec: a wv checkpoint or an open_clip model ---------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """Which model: a wv checkpoint path, or an open_clip name (+ weights file, pretrained tag, config JSON)."""

    model: str | None = None
    weights: str | None = None
    pretrained: str | None = None
    config: str | None = None

    def is_checkpoint(self) -> bool:
        return self.model is not None and self.config is None and Path(self.model).is_file()

    def fingerprint(self) -> dict:
        """The options recorded with the features: names, and the sha256 of every file used."""
        files = {k: v for k, v in asdict(self).items() if v and k != "pretrained" and Path(v).is_file()}
        return {**asdict(self), "sha256": {k: file_sha256(v) for k, v in sorted(files.items())}}


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ImageModel:
    """A loaded model: `preprocess` (PIL image -> tensor), `features(images)`, `logits(images)`."""

    def __init__(self, kind: str, net, preprocess, device, checkpoint: dict | None = None, name: str = ""):
        self.kind, self.net, self.preprocess, self.device = kind, net, preprocess, device
        self.checkpoint, self.name = checkpoint, name

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            return self.net.encode_image(images, normalize=True)
        return penultimate(self.net, images)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Checkpoints only (CLIP needs a zero-shot head, see wv.curate.confidence)."""
        return self.net(images)

    def feature_dim(self) -> int:
        probe = torch.zeros(1, *self.input_shape(), device=self.device)
        return int(self.features(probe).shape[1])

    def input_shape(self) -> tuple:
        image = Image.new("RGB", (64, 64))
        return tuple(self.preprocess(image).shape)


def load_image_model(spec: ModelSpec, device: torch.device) -> ImageModel:
    if spec.is_checkpoint():
        try:
            net, checkpoint = load_checkpoint(spec.model, map_location=device)
        except WvError as error:
            hint = "; for open_clip weights give --model NAME --weights FILE" if "is not a wv checkpoint" in str(error) else ""
            raise WvError(f"{error}{hint}") from None
        preprocess = eval_transform(checkpoint.get("input") or default_input(checkpoint["arch"]))
        return ImageModel("checkpoint", net, preprocess, device, checkpoint, checkpoint["arch"])
    return load_clip(spec, device)


def load_clip(spec: ModelSpec, device: torch.device) -> ImageModel:
    import open_clip

    name = spec.model
    schema = bool(name) and name.startswith(("local-dir:", "hf-hub:"))  # open_clip reads config and weights from there
    if name and not spec.config and not schema and (os.sep in name or name.endswith((".pt", ".pth", ".ckpt", ".bin"))):
        raise WvError(f"model file {name} does not exist")
    if spec.config:
        if not Path(spec.config).is_file():
            raise WvError(f"model config {spec.config} does not exist")
        open_clip.add_model_config(spec.config)
        name = name or Path(spec.config).stem
    if not name:
        raise WvError("give --model: an open_clip model name or a wv checkpoint file")
    if not schema and name not in open_clip.list_models():
        hint = "" if spec.config else "; a file path must be a wv checkpoint, a custom architecture needs --model-config"
        raise WvError(f"{name!r} is neither a wv checkpoint file nor an open_clip model name{hint}")
    if spec.weights and spec.pretrained:
        raise WvError("give --weights FILE or --pretrained TAG, not both")
    if spec.weights and not Path(spec.weights).is_file():
        raise WvError(f"weights file {spec.weights} does not exist")
    if not (spec.weights or spec.pretrained or schema):
        raise WvError(f"open_clip model {name} needs --weights FILE or --pretrained TAG (random weights give meaningless features)")
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=spec.weights or spec.pretrained, device=device)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        raise WvError(f"cannot load open_clip {name} with {spec.weights or spec.pretrained}: {str(error).splitlines()[0][:160]}") from None
    return ImageModel("clip", net.eval(), preprocess, device, name=name)
