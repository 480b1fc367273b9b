"""Several `wv train` checkpoints as one classifier: the mean of their softmax probabilities (the
ensembles of the challenge write-ups). Used by `wv eval --checkpoint A --checkpoint B`, `wv score
confidence --model A --model B` and `wv relabel`.

The members must know the same classes (in any order): each member's probabilities are put in one
class order (the first checkpoint's, or the one the caller gives) before they are averaged. Members
may preprocess differently (another input size): `preprocess` then makes one tensor per distinct
preprocessing, and each member reads its own.
"""

import json
from pathlib import Path

import torch

from wv.errors import WvError
from wv.models import default_input, eval_transform, load_checkpoint


class Views:
    """PIL image -> a tuple of tensors, one per distinct preprocessing (picklable for loader workers)."""

    def __init__(self, transforms: list):
        self.transforms = transforms

    def __call__(self, image) -> tuple:
        return tuple(transform(image) for transform in self.transforms)


class Ensemble:
    """Checkpoints loaded on `device`: `preprocess` (PIL image -> tensor, or a tuple with several
    preprocessings), `member_probabilities(images)` and `probabilities(images)` over `classes`."""

    kind = "checkpoint"

    def __init__(self, paths, device, classes: list[str] | None = None, what: str = "the given classes"):
        paths = [str(p) for p in paths]
        if not paths:
            raise WvError("give at least one checkpoint")
        self.paths, self.device = paths, device
        loaded = [load_checkpoint(path, map_location=device) for path in paths]
        self.nets = [net for net, _ in loaded]
        self.checkpoints = [checkpoint for _, checkpoint in loaded]
        self.classes = list(classes if classes is not None else self.checkpoints[0]["classes"])
        reference = f"checkpoint {Path(paths[0]).name}" if classes is None else what
        self.columns = [class_columns(c["classes"], self.classes, path, reference) for c, path in zip(self.checkpoints, paths)]
        self.inputs = [c.get("input") or default_input(c["arch"]) for c in self.checkpoints]
        distinct = list(dict.fromkeys(json.dumps(spec, sort_keys=True) for spec in self.inputs))
        self.view_of = [distinct.index(json.dumps(spec, sort_keys=True)) for spec in self.inputs]
        transforms = [eval_transform(json.loads(spec)) for spec in distinct]
        self.preprocess = transforms[0] if len(transforms) == 1 else Views(transforms)
        self.name = " + ".join(c["arch"] for c in self.checkpoints)

    def __len__(self) -> int:
        return len(self.nets)

    @torch.no_grad()
    def member_probabilities(self, images) -> list[torch.Tensor]:
        """Each member's softmax [batch, classes] in `classes` order; `images` as `preprocess` made them."""
        views = images if isinstance(images, (tuple, list)) else (images,)
        out = []
        for net, view, columns in zip(self.nets, self.view_of, self.columns):
            output = net(views[view])
            logits = output[0] if isinstance(output, tuple) else output
            out.append(logits.float().softmax(1)[:, columns.to(logits.device)])
        return out

    def probabilities(self, images) -> torch.Tensor:
        return average(self.member_probabilities(images))


def average(probabilities: list[torch.Tensor]) -> torch.Tensor:
    """The ensemble's probabilities: the plain mean of the members'."""
    return probabilities[0] if len(probabilities) == 1 else torch.stack(probabilities).mean(0)


def class_columns(member: list[str], wanted: list[str], path: str, reference: str) -> torch.Tensor:
    """The member's output column of each class in `wanted` (the same classes, any order), else one sentence."""
    column = {synset: i for i, synset in enumerate(member)}
    if len(column) != len(member) or set(column) != set(wanted) or len(set(wanted)) != len(wanted):
        missing = sorted(set(wanted) - set(column))
        extra = sorted(set(column) - set(wanted))
        detail = f"it lacks {len(missing)} (e.g. {missing[0]})" if missing else f"it has {len(extra)} more (e.g. {extra[0]})" if extra else "its class list repeats a class"
        raise WvError(f"checkpoint {Path(path).name} was trained on other classes than {reference} ({detail}); an ensemble's models must share one class list")
    return torch.tensor([column[s] for s in wanted])
