"""The challenge entries' losses, on top of the stream's per-sample weight.

    soft labels     a score as a loss weight: 1 at or above a threshold, score / threshold below it
                    (the 2017 entries' soft-label recipe); a missing score weighs 1
    gated backprop  samples whose top-1 probability under the model being trained is below a gate
                    give no gradient; the gate follows a schedule down to 0 (e.g. '0.5@0,0@10')
    two heads       the classifier plus a linear head of its own regressing the sample's LDA topic
                    distribution (ROOT/features/lda, written by `wv score lda`), losses weighted 0.75 / 0.25;
                    the topic loss a per-topic sigmoid cross-entropy (gombru 2017) or a softmax one
The class-weighted cross-entropy (w_i = N / N_class(i)) is the stream's `--class-balance loss`:
its weight arrives in batch["weight"] like every other loss weight.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wv.errors import WvError
from wv.models import classifier_layer
from wv.shards.root import Root
from wv.stream.schedule import UNITS, Schedule


@dataclass(frozen=True)
class BackpropGate:
    """'0.5@0,0@10' (over epochs, fractional within an epoch) or '0.5@0,0@20000 steps' (optimizer steps)."""

    schedule: Schedule
    unit: str
    text: str

    @classmethod
    def parse(cls, spec: str) -> "BackpropGate":
        words = spec.split()
        unit = "epoch"
        if len(words) > 1 and words[-1].lower() in UNITS:
            unit, words = UNITS[words[-1].lower()], words[:-1]
        if len(words) != 1:
            raise WvError(f"--backprop-gate {spec!r} must be a schedule, optionally followed by epochs or steps, e.g. '0.5@0,0@10'")
        schedule = Schedule.parse(words[0], "--backprop-gate")
        if any(value < 0 for _, value in schedule.points):
            raise WvError(f"--backprop-gate {spec!r} must keep its gate at 0 or more (a top-1 probability; 0 gates nothing)")
        return cls(schedule, unit, spec.strip())

    def threshold(self, epoch_time: float, step: int) -> float:
        return float(self.schedule(epoch_time if self.unit == "epoch" else step))


def soft_label_weight(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where score >= threshold or the score is missing (NaN); score / threshold (at least 0) below."""
    weight = (scores / threshold).clamp(min=0, max=1)
    return torch.where(torch.isnan(scores), torch.ones_like(scores), weight)


def confidence_gate(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the model's top-1 probability reaches the gate, else 0 (computed without gradient)."""
    with torch.no_grad():
        return (logits.float().softmax(dim=1).amax(dim=1) >= threshold).float()


def class_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy, summed and divided by the batch size (a zero weight removes a sample's
    gradient without changing the others' scale). Samples without a label (-1) weigh 0."""
    known = labels >= 0
    losses = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
    return (losses * weights * known).sum() / len(labels)


def topic_loss(topic_logits: torch.Tensor, targets: torch.Tensor, kind: str = "sigmoid") -> torch.Tensor:
    """sigmoid (gombru 2017): the sum over topics of a binary cross-entropy of each topic's sigmoid output
    against its probability; softmax: cross-entropy of one softmax against the distribution (KL up to a
    constant). Rows of NaN (text that LDA could not score) are left out; divided by the batch size."""
    valid = ~torch.isnan(targets[:, 0])
    if not valid.any():
        return topic_logits.sum() * 0.0
    logits, wanted = topic_logits[valid].float(), targets[valid].float()
    if kind == "sigmoid":
        losses = F.binary_cross_entropy_with_logits(logits, wanted, reduction="none").sum(dim=1)
    else:
        losses = -(wanted * logits.log_softmax(dim=1)).sum(dim=1)
    return losses.sum() / len(targets)


class TwoHead(nn.Module):
    """A classifier with a second linear head on its penultimate features: (class logits, topic logits).

    The classifier stays a plain model of its architecture (saved as the checkpoint's `model`, so
    `wv embed` and `wv score confidence` read it as any other); the topic head is saved beside it."""

    def __init__(self, model: nn.Module, topics: int):
        super().__init__()
        self.model = model
        self.topic_head = nn.Linear(classifier_layer(model).in_features, topics)

    def forward(self, images):
        captured = []
        hook = classifier_layer(self.model).register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            logits = self.model(images)
        finally:
            hook.remove()
        return logits, self.topic_head(captured[-1].flatten(1))


class TopicTargets:
    """Each sample's topic distribution from ROOT/features/NAME/{shard}.npy, looked up by the stream's
    `row` (shard order): the files are memory-mapped, so nothing is held for the whole dataset."""

    def __init__(self, root, name: str, split: str):
        root = Root(root)
        shards = root.shards(split)
        self.arrays = []
        for shard, samples in zip(shards["name"], shards["samples"]):
            path = root.features_path(name, shard)
            if not path.is_file():
                raise WvError(f"--topic-head {name}: {path} is missing; run `wv score lda {root.path}` first")
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError):
                raise WvError(f"{path} is not a numpy array file; re-run `wv score lda --overwrite`") from None
            if array.ndim != 2 or array.dtype.kind != "f":
                raise WvError(f"{path} holds a {array.dtype} array of shape {array.shape}, not topic rows; re-run `wv score lda --overwrite`")
            if array.shape[0] != samples:
                raise WvError(f"{path} holds {array.shape[0]} rows for a shard of {samples}; re-run `wv score lda`")
            self.arrays.append(array)
        self.topics = int(self.arrays[0].shape[1])
        self.starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())])

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.numpy()
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), self.topics), dtype=np.float32)
        for i, (s, r) in enumerate(zip(shard, rows)):
            out[i] = self.arrays[s][r - self.starts[s]]
        return torch.from_numpy(out)
