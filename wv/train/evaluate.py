"""`wv eval`: top-1 / top-5 of a checkpoint on val shards, single- or multi-crop, per class.

Every sample is seen once: shards are split over ranks (torchrun) and loader workers, each reads
its shards straight through; per-class counts are summed over ranks at the end. The probabilities
of a sample's crops are averaged before ranking (the challenge entries' 10- and 144-crop tests).
Several checkpoints (an ensemble, wv.ensemble) see the same crops of each image (at each one's own
input size); their crop-averaged probabilities are averaged, and every member and the ensemble is
counted.
"""

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wv.atomic import atomic_path, write_json
from wv.errors import WvError
from wv.progress import bar_options
from wv.runtime import check_processes, one_thread, unwrap_errors
from wv.shards.read import iter_samples, shard_urls
from wv.shards.root import Root
from wv.stream.range_reader import decode_image, image_bytes, label_of
from wv.train import distributed
from wv.train.crops import CROPS, EvalCrops, normalise


class EvalSamples(torch.utils.data.IterableDataset):
    """((crops uint8 [n, 3, s, s] per size), label) for every sample of this rank's shards, split over workers."""

    def __init__(self, urls: list, sizes: list[int], crops: int):
        self.urls, self.transforms = urls, [EvalCrops(size, crops) for size in sizes]

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        mine = self.urls[worker.id :: worker.num_workers] if worker else self.urls
        for sample in iter_samples(mine):
            image = decode_image(image_bytes(sample), sample["__key__"], sample.get("__url__"))
            yield tuple(transform(image) for transform in self.transforms), label_of(sample)


@dataclass
class Member:
    """One model of an evaluation: its net, its input (size, mean, std) and, in an ensemble, the column
    of its outputs for each of the ensemble's classes (None: already in that order)."""

    net: torch.nn.Module
    input: dict
    columns: torch.Tensor | None = None


def check_source(source, flag: str) -> None:
    """A folder must be a dataset root: a WebVision download or any other folder is refused in one sentence."""
    if Path(str(source)).is_dir() and not Root(source).exists():
        raise WvError(f"{flag} {source} is a folder but not a dataset root (no wv.json); give a root made by `wv shard build`, or shard files")


def check_out(out, flag: str = "--out") -> Path:
    """A run folder: not a file, and not a dataset root itself (its files would mix with the root's)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WvError(f"{flag} {out} is a file, not a folder; choose a folder for the run's files")
    if Root(out).exists():
        raise WvError(f"{flag} {out} is a dataset root; choose a folder outside it for the run's files")
    return out


def eval_urls(source, split: str, world) -> tuple[list, list | None]:
    """(this rank's shard URLs, the classes of the source when it is a dataset root)."""
    check_source(source, "--shards")
    urls = shard_urls(source, split)
    classes = Root(source).classes() if Root(source).exists() else None
    return urls[world.rank :: world.size], classes


def label_map(checkpoint_classes: list, source_classes: list | None, num_outputs: int) -> np.ndarray:
    """source label -> model output, matched by synset (identity for plain shards); -1: the model lacks it."""
    if source_classes is None:
        return np.arange(num_outputs)
    index = {synset: i for i, synset in enumerate(checkpoint_classes)}
    mapping = np.array([index.get(c["synset"], -1) for c in sorted(source_classes, key=lambda c: c["label"])])
    if (mapping < 0).all():
        raise WvError("the checkpoint's classes share no synset with the dataset's; it was trained on another dataset")
    return mapping


def evaluate(model, source, input_spec: dict, classes: list, world, crops: int = 1, split: str = "val", batch_size: int = 64, workers: int = 2, autocast: bool = False, progress: bool = False) -> dict:
    """Top-1 / top-5 and per-class counts of `model` (outputs in the order of `classes`, synsets) on `source`."""
    return evaluate_members([Member(model, input_spec)], source, classes, world, crops, split, batch_size, workers, autocast, progress)[0]


@torch.no_grad()
def evaluate_members(
    members: list[Member], source, classes: list, world, crops: int = 1, split: str = "val", batch_size: int = 64, workers: int = 2, autocast: bool = False, progress: bool = False
) -> list[dict]:
    """The figures of each member and, with several, of their ensemble (last): the mean of their
    crop-averaged probabilities (all in the order of `classes`)."""
    if crops not in CROPS:
        raise WvError(f"--crops must be one of {', '.join(map(str, CROPS))}")
    urls, source_classes = eval_urls(source, split, world)
    mapping = torch.from_numpy(label_map(classes, source_classes, len(classes)))
    n_labels = len(mapping)
    sizes = list(dict.fromkeys(int(m.input["size"]) for m in members))
    loader = (
        torch.utils.data.DataLoader(EvalSamples(urls, sizes, crops), batch_size=batch_size, num_workers=min(workers, len(urls)), worker_init_fn=one_thread, pin_memory=world.device.type == "cuda")
        if urls
        else []
    )  # more ranks than shards
    heads = len(members) + (len(members) > 1)
    counts = torch.zeros(heads, n_labels + 1, 3, dtype=torch.float64)  # per head, per source label (last: unlabelled): n, top1, top5
    was_training = [m.net.training for m in members]
    for m in members:
        m.net.eval()
    started = time.perf_counter()
    with tqdm(desc=f"eval {crops}-crop", unit="img", dynamic_ncols=True, **bar_options(progress and world.main)) as bar:
        for images, labels in unwrap_errors(loader):
            probs = [member_probabilities(m, images[sizes.index(int(m.input["size"]))].to(world.device, non_blocking=True), autocast) for m in members]
            if len(probs) > 1:
                probs.append(torch.stack(probs).mean(0))
            known = (labels >= 0) & (labels < n_labels)
            target = torch.where(known, mapping[labels.clamp(0, n_labels - 1)], torch.full_like(labels, -1))
            rows = torch.where(known, labels, torch.full_like(labels, n_labels))
            for head, p in enumerate(probs):
                count_hits(counts[head], p, target, rows)
            bar.update(len(labels))
    for m, training in zip(members, was_training):
        m.net.train(training)
    counts = distributed.all_sum(world, counts)
    seconds = time.perf_counter() - started
    return [summarise(c, source_classes, crops, seconds) for c in counts]


def member_probabilities(member: Member, images: torch.Tensor, autocast: bool) -> torch.Tensor:
    probs = crop_probabilities(member.net, images, member.input, autocast)
    return probs if member.columns is None else probs[:, member.columns.to(probs.device)]


def count_hits(counts: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> None:
    """Adds n, top-1 and top-5 hits per row (source label) of a batch to `counts` [labels + 1, 3]."""
    top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices.cpu()
    hit1 = (top5[:, 0] == target) & (target >= 0)
    hit5 = (top5 == target[:, None]).any(dim=1) & (target >= 0)
    counts.index_add_(0, rows, torch.stack([torch.ones_like(hit1, dtype=torch.float64), hit1.double(), hit5.double()], 1))


def crop_probabilities(model, images: torch.Tensor, input_spec: dict, autocast: bool) -> torch.Tensor:
    """images uint8 [B, crops, 3, s, s] -> softmax averaged over the crops [B, classes]."""
    batch, crops = images.shape[:2]
    flat = normalise(images.flatten(0, 1), input_spec["mean"], input_spec["std"])
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        output = model(flat)
    logits = output[0] if isinstance(output, tuple) else output
    return logits.float().softmax(dim=1).view(batch, crops, -1).mean(dim=1)


def summarise(counts: torch.Tensor, source_classes: list | None, crops: int, seconds: float) -> dict:
    labelled = counts[:-1]
    n = int(labelled[:, 0].sum())
    if n == 0:
        raise WvError("the evaluation shards hold no labelled sample")
    names = {c["label"]: (c["synset"], (c.get("names") or [""])[0]) for c in source_classes or []}
    per_class = [
        {"label": label, "synset": names.get(label, ("", ""))[0], "name": names.get(label, ("", ""))[1], "n": int(row[0]), "top1": float(row[1] / row[0]), "top5": float(row[2] / row[0])}
        for label, row in enumerate(labelled.tolist())
        if row[0] > 0
    ]
    return {
        "n": n,
        "top1": float(labelled[:, 1].sum() / n),
        "top5": float(labelled[:, 2].sum() / n),
        "crops": crops,
        "unlabelled": int(counts[-1, 0]),
        "classes": len(per_class),
        "seconds": round(seconds, 2),
        "per_class": per_class,
    }


def write_results(figures: dict, out) -> dict:
    """OUT/eval.json (the figures) and OUT/per_class.csv; returns the paths."""
    out = Path(out)
    paths = {"json": str(out / "eval.json"), "csv": str(out / "per_class.csv")}
    write_json(paths["json"], figures)
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "synset", "name", "n", "top1", "top5"])
        writer.writeheader()
        writer.writerows(figures["per_class"])
    return paths


def eval_checkpoint(checkpoint_path, source, crops: int = 1, split: str = "val", out=None, batch_size: int = 64, workers: int = 2, device: str = "auto", progress: bool = True) -> dict:
    """What `wv eval` runs: load a wv checkpoint (or a list of them: an ensemble), evaluate it (under
    torchrun: all ranks), write JSON + CSV. With several checkpoints the figures are the ensemble's,
    and `models` holds each checkpoint's n, top-1 and top-5."""
    from wv.ensemble import Ensemble

    paths = [str(p) for p in checkpoint_path] if isinstance(checkpoint_path, (list, tuple)) else [str(checkpoint_path)]
    if batch_size < 1 or workers < 0:
        raise WvError("--batch-size must be at least 1 and --workers 0 or more")
    check_processes(workers, "--workers")
    if not paths:
        raise WvError("give --checkpoint: a `wv train` checkpoint (repeat it for an ensemble)")
    folder = f"eval-{crops}crop" if len(paths) == 1 else f"eval-ensemble{len(paths)}-{crops}crop"
    out = check_out(out or Path(paths[0]).parent / folder)
    check_source(source, "--shards")
    world = distributed.start(device)
    try:
        ensemble = Ensemble(paths, world.device)
        members = [Member(net, spec, None if len(paths) == 1 else columns) for net, spec, columns in zip(ensemble.nets, ensemble.inputs, ensemble.columns)]
        results = evaluate_members(members, source, ensemble.classes, world, crops, split, batch_size, workers, autocast=world.device.type == "cuda", progress=progress)
        figures = results[-1]
        if len(paths) == 1:
            figures.update(checkpoint=paths[0])
        else:
            figures.update(checkpoints=paths, models=[{"checkpoint": path, "n": r["n"], "top1": r["top1"], "top5": r["top5"]} for path, r in zip(paths, results)])
        figures.update(shards=str(source), world_size=world.size)
        if world.main:
            figures["paths"] = write_results(figures, out)
        return figures
    finally:
        distributed.stop(world)
