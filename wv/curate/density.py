"""`wv score density`: CurriculumNet's density-distance scores, per class, over a dataset root.

The maths of one class (the exact and approximate paths, tile by tile) is wv.curate.density_core,
on plain arrays; this module is its driver: features in, sidecars out.

Work is gathered class by class from the per-shard feature files, in groups of classes that fit
`memory_gb`: memory is bounded by the largest class, never the dataset. Finished classes are kept in
scores/{name}/_classes/ so that a killed run resumes; the per-shard sidecars
scores/{name}/{shard}.parquet (__key__, density, delta, cutoff) are written at the end. With
`workers` > 1 (or Ray) a group's classes are computed in parallel on CPU, one class per task; a
class's result does not depend on where it ran.
"""

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from wv.atomic import write_parquet
from wv.curate.density_core import ClassDensity, class_density
from wv.curate.options import DensityOptions, DensityResources
from wv.errors import WvError
from wv.parallel import Workers
from wv.progress import bar_options
from wv.runtime import pick_device, set_threads
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "score density"


# -- the dataset: classes gathered from the per-shard features ----------------------------------------
PARTIALS = "_classes"  # scores/{name}/_classes/{label}.parquet: finished classes of an unfinished run


def pick_features(root: Root, name: str | None) -> str:
    folder = root.path / "features"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if name:
        if name not in names:
            raise WvError(f"no features named {name!r} under {folder}; have: {', '.join(names) or 'none'} (make them with `wv embed`)")
        return name
    if not names:
        raise WvError(f"{root.path} has no image features; make them first with `wv embed {root.path} --model ...`")
    if len(names) > 1:
        raise WvError(f"{root.path} has several feature sets ({', '.join(names)}); choose one with --features")
    return names[0]


def sample_labels(root: Root, shards: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(label int32 per sample in dataset order, the index of each shard's first sample + the total):
    4 bytes per sample, the only thing held for the whole split (64 MB at 16M samples)."""
    labels = []
    for shard, samples in shards.select("name", "samples").iter_rows():
        label = pl.read_parquet(root.meta_path(shard), columns=["label"])["label"].cast(pl.Int32).to_numpy()
        if label.size != samples:
            raise WvError(f"{root.meta_path(shard)} has {label.size} rows for {samples} samples; run `wv shard verify`")
        labels.append(label)
    starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())]).astype(np.int64)
    return (np.concatenate(labels) if labels else np.zeros(0, np.int32)), starts


def check_features(root: Root, name: str, shards: pl.DataFrame) -> int:
    """The features' width; WvError unless every shard has its features, one row per sample."""
    dims = set()
    for shard, samples in shards.select("name", "samples").iter_rows():
        if not sidecars.complete(root, "features", name, shard, samples):
            raise WvError(f"features {name!r} are missing or incomplete for {shard}; finish `wv embed` first")
        dims.add(sidecars.read_features(root, name, shard).shape[1])
    if len(dims) > 1:
        raise WvError(f"features {name!r} have different widths in different shards ({sorted(dims)}); re-run `wv embed --overwrite`")
    return dims.pop() if dims else 0


def class_groups(sizes: dict[int, int], dim: int, group_bytes: float) -> list[list[int]]:
    """Classes in label order, grouped so that each group's float32 features fit `group_bytes`
    (a class larger than that is a group of its own: memory is bounded by the largest class)."""
    return feature_groups(sorted(sizes.items()), dim, group_bytes)


def feature_groups(counts, dim: int, group_bytes: float) -> list[list]:
    """(item, samples) pairs in the order given, packed into consecutive groups whose float32
    features (samples x dim x 4 bytes) fit `group_bytes`; an item larger than that is a group of its own."""
    groups, current, used = [], [], 0
    for item, count in counts:
        need = count * dim * 4
        if current and used + need > group_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(item)
        used += need
    return groups + ([current] if current else [])


def gather(root: Root, features: str, shard_names: list[str], label: np.ndarray, starts: np.ndarray, labels: list[int], dim: int) -> dict:
    """label -> (its samples' features as float32, their dataset indices), each class in dataset
    order, read in one pass over the shards."""
    index = np.flatnonzero(np.isin(label, labels))  # dataset order, so grouped by shard
    by_class = np.argsort(label[index], kind="stable")
    place = np.empty_like(by_class)
    place[by_class] = np.arange(by_class.size)  # index[k] goes to row place[k] of the block
    block = np.empty((index.size, dim), dtype=np.float32)
    bounds = np.searchsorted(index, starts)
    for position in np.flatnonzero(np.diff(bounds)):
        first, last = bounds[position], bounds[position + 1]
        stored = sidecars.read_features(root, features, shard_names[position])
        block[place[first:last]] = stored[index[first:last] - starts[position]]
    ordered = index[by_class]
    present, begins, counts = np.unique(label[ordered], return_index=True, return_counts=True)
    return {int(c): (block[b : b + n], ordered[b : b + n]) for c, b, n in zip(present, begins, counts)}


def distance_budget(memory_gb: float) -> int:
    """Distances that may be held at once: half of the memory, at up to 8 bytes each."""
    return int(memory_gb * 2**30 / 2 / 8)


def partial_path(root: Root, name: str, label: int):
    return sidecars.sidecar_dir(root, "scores", name) / PARTIALS / f"{label}.parquet"


def score_density(
    root: str | Path,
    opts: DensityOptions,
    name: str = "density",
    device: str = DensityResources.device,
    memory_gb: float = DensityResources.memory_gb,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet (__key__, density, delta, cutoff); returns the figures.

    workers > 1 or executor "ray": classes computed in parallel CPU processes, each with
    memory_gb / workers for its distances."""
    opts.validate()
    DensityResources(device, memory_gb).validate()
    pooled = workers > 1 or executor == "ray"
    if pooled and device not in ("auto", "cpu"):
        raise WvError(f"--workers above 1 and --executor ray compute classes on CPU; drop --device {device}, or use one worker")
    dev = pick_device("cpu" if pooled else device)
    root = Root(root)
    root.info()
    check_name(name)
    with writing(root, COMMAND):
        return density_run(root, opts, name, dev, memory_gb, overwrite, progress, workers, executor, ray_address)


def density_run(root: Root, opts: DensityOptions, name: str, dev: torch.device, memory_gb: float, overwrite: bool, progress: bool, workers: int, executor: str, ray_address: str | None) -> dict:
    started = time.time()
    opts = DensityOptions(**{**asdict(opts), "features": pick_features(root, opts.features)})
    shards = root.shards(opts.split)
    if shards.height == 0:
        raise WvError(f"{root.path} has no {opts.split} shards")
    dim = check_features(root, opts.features, shards)
    todo = sidecars.begin_run(root, "scores", name, {**asdict(opts), "format": "wv-density/1"}, overwrite, opts.split, command=COMMAND)
    figures = {
        "name": name,
        "features": opts.features,
        "dim": dim,
        "device": str(dev),
        "classes": 0,
        "samples": int(shards["samples"].sum()),
        "classes_done": 0,
        "classes_resumed": 0,
        "exact": 0,
        "approximate": 0,
        "float64_fallback": 0,
        "largest_class": 0,
        "slowest_class_seconds": 0.0,
        "shards_written": len(todo),
        "shards_skipped": shards.height - len(todo),
        "paths": {"scores": str(sidecars.sidecar_dir(root, "scores", name))},
    }
    if todo:
        with Workers(workers, executor, ray_address) as pool:
            compute_classes(root, opts, name, shards, dim, dev, memory_gb, figures, progress, pool)
        write_shards(root, name, shards, todo)
        shutil.rmtree(sidecars.sidecar_dir(root, "scores", name) / PARTIALS, ignore_errors=True)
    figures["seconds"] = round(time.time() - started, 2)
    return figures


@dataclass(frozen=True)
class ClassJob:
    label: int
    features: np.ndarray
    opts: DensityOptions
    device: str
    budget: int
    threads: int | None  # torch threads in a pool worker; None: leave the process's setting


def class_task(job: ClassJob) -> tuple[int, ClassDensity, float]:
    """Pool task: one class's density -> (label, result, seconds)."""
    set_threads(job.threads)
    began = time.time()
    return job.label, class_density(job.features, job.opts, job.device, job.budget), time.time() - began


def compute_classes(root: Root, opts: DensityOptions, name: str, shards: pl.DataFrame, dim: int, device: torch.device, memory_gb: float, figures: dict, progress: bool, pool: Workers) -> None:
    label, starts = sample_labels(root, shards)
    present, counts = np.unique(label, return_counts=True)
    sizes = dict(zip(present.tolist(), counts.tolist()))
    figures["classes"], figures["largest_class"] = len(sizes), max(sizes.values(), default=0)
    todo = {label: size for label, size in sizes.items() if not partial_path(root, name, label).is_file()}
    figures["classes_resumed"] = len(sizes) - len(todo)
    shard_names = shards["name"].to_list()
    budget = distance_budget(memory_gb) // pool.workers  # each of the workers holds its own distances
    threads = None if pool.inline else 1 if pool.ray is not None else max(1, (os.cpu_count() or 1) // pool.workers)
    with tqdm(total=sum(todo.values()), desc=f"density {opts.features}", unit="sample", dynamic_ncols=True, **bar_options(progress)) as bar:
        for group in class_groups(todo, dim, memory_gb * 2**30 / 2):
            gathered = gather(root, opts.features, shard_names, label, starts, group, dim)
            for cls, (features, _) in gathered.items():
                if not np.isfinite(features).all():
                    raise WvError(f"features {opts.features!r} of class {cls} hold NaN or inf; re-run `wv embed --overwrite`")
            jobs = (ClassJob(cls, features, opts, str(device), budget, threads) for cls, (features, _) in gathered.items())
            for cls, result, seconds in pool.map(class_task, jobs):
                rows = gathered[cls][1]
                shard = np.searchsorted(starts, rows, side="right") - 1
                write_parquet(
                    partial_path(root, name, cls),
                    pl.DataFrame(
                        {
                            "shard": pl.Series(shard, dtype=pl.Int32),
                            "row": pl.Series(rows - starts[shard], dtype=pl.Int32),
                            "density": pl.Series(result.density, dtype=pl.Int32),
                            "delta": pl.Series(result.delta, dtype=pl.Float32),
                            "cutoff": pl.Series([result.cutoff] * len(rows), dtype=pl.Float32),
                        }
                    ),
                )
                figures["classes_done"] += 1
                figures["exact" if result.exact else "approximate"] += 1
                figures["float64_fallback"] += result.path == "float64"
                figures["slowest_class_seconds"] = round(max(figures["slowest_class_seconds"], seconds), 3)
                bar.update(len(rows))


def write_shards(root: Root, name: str, shards: pl.DataFrame, todo: list[str]) -> None:
    """Gather the per-class results (one file at a time) into per-sample arrays (13 bytes per sample),
    then write each shard's slice."""
    folder = sidecars.sidecar_dir(root, "scores", name) / PARTIALS
    starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())]).astype(np.int64)
    density, delta = np.zeros(starts[-1], dtype=np.int32), np.zeros(starts[-1], dtype=np.float32)
    cutoff, seen = np.zeros(starts[-1], dtype=np.float32), np.zeros(starts[-1], dtype=bool)
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        part = pl.read_parquet(path)
        at = starts[part["shard"].to_numpy()] + part["row"].to_numpy()
        density[at], delta[at], cutoff[at], seen[at] = part["density"].to_numpy(), part["delta"].to_numpy(), part["cutoff"].to_numpy(), True
    positions = {shard: i for i, shard in enumerate(shards["name"].to_list())}
    for shard in todo:
        first, last = starts[positions[shard]], starts[positions[shard] + 1]
        keys = sidecars.shard_keys(root, shard)
        covered = int(seen[first:last].sum())
        if covered != keys.len() or last - first != keys.len():
            raise WvError(f"density results cover {covered} of the {keys.len()} samples of {shard}; re-run with --overwrite")
        sidecars.write_scores(
            root,
            name,
            shard,
            pl.DataFrame(
                {
                    "__key__": keys,
                    "density": pl.Series(density[first:last], dtype=pl.Int32),
                    "delta": pl.Series(delta[first:last], dtype=pl.Float32),
                    "cutoff": pl.Series(cutoff[first:last], dtype=pl.Float32),
                }
            ),
        )
