"""`wv curriculum split`: per class, subsets 0 (clean) .. S-1 (very noisy) from a score.

    kmeans    CurriculumNet's split (the default for `--by density`): k-means with S clusters on the
              class's densities (scikit-learn KMeans, n_init=10 as when the reference was written,
              random_state = seed); the clusters' smallest densities are the bounds; a sample at or
              above the highest bound is subset 0, one in [bound j, bound j+1) is subset S-1-j, so the
              densest cluster is the clean subset.
    quantile  for any other score: the class's S-quantiles of the column (NaN and null left out);
              with higher-is-cleaner (the default), the top S-th of the class is subset 0, the
              bottom S-th subset S-1; equal values share a subset. A sample without a value goes to
              the last subset.
A class with fewer samples (or, for k-means, fewer distinct values) than subsets is not split: all
of its samples are subset 0 (the reference refuses such a class; we keep it whole rather than call
any of it noisy). Such classes are counted in the figures.

Writes ROOT/scores/{name}/{shard}.parquet: __key__, subset (Int8). The streaming sampler reads it.
Memory: about 21 bytes per sample of the split (label, value, the class order, subset: numpy arrays in
dataset order, no per-sample table); 16M samples take about 340 MB.
"""

import time
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from wv.curate.options import CurriculumOptions
from wv.errors import WvError
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "curriculum split"


def kmeans_subsets(values: np.ndarray, subsets: int = 3, seed: int = 0) -> np.ndarray | None:
    """CurriculumNet's split of one class (values: densities in dataset order); None if it cannot be split."""
    from sklearn.cluster import KMeans

    values = np.asarray(values, dtype=np.float32)
    if len(values) < subsets or len(np.unique(values)) < subsets:
        return None
    labels = KMeans(n_clusters=subsets, n_init=10, random_state=seed).fit(values.reshape(-1, 1)).labels_
    bounds = np.sort([values[labels == k].min() for k in range(subsets)])
    return (subsets - np.searchsorted(bounds, values, side="right")).astype(np.int8)


def quantile_subsets(values: np.ndarray, subsets: int = 3, higher_is_cleaner: bool = True) -> np.ndarray | None:
    """Per-class quantile split; samples without a value (NaN) go to the last subset. None if it cannot be split."""
    values = np.asarray(values, dtype=np.float64)
    known = values[~np.isnan(values)]
    if len(known) < subsets:
        return None
    cuts = np.quantile(known, [k / subsets for k in range(1, subsets)])
    level = np.searchsorted(cuts, values, side="right")  # 0 .. subsets-1, higher value -> higher level
    split = (subsets - 1 - level) if higher_is_cleaner else level
    return np.where(np.isnan(values), subsets - 1, split).astype(np.int8)


def parse_by(root: Root, by: str, split: str) -> tuple[str, str]:
    """SCORE[:COLUMN] -> (score, column); the column may be left out when the score has one numeric column."""
    score, _, column = by.partition(":")
    names = sidecars.score_names(root)
    if score not in names:
        raise WvError(f"no score named {score!r} under {root.path / 'scores'}; have: {', '.join(names) or 'none'}")
    first = root.shard_names(split)[0]
    path = root.score_path(score, first)
    if not path.is_file():
        raise WvError(f"score {score!r} is missing for {first}; run its scorer first")
    schema = {c: t for c, t in pl.read_parquet_schema(path).items() if c != "__key__"}
    numeric = [c for c, t in schema.items() if t.is_numeric()]
    if not column:
        column = "density" if "density" in numeric else (numeric[0] if len(numeric) == 1 else "")
        if not column:
            raise WvError(f"score {score!r} has several columns ({', '.join(numeric)}); choose one with --by {score}:COLUMN")
    if column not in schema:
        raise WvError(f"score {score!r} has no column {column!r}; it has {', '.join(schema)}")
    if column not in numeric:
        raise WvError(f"{score}:{column} is not numeric, so it cannot rank samples")
    return score, column


def read_values(root: Root, score: str, column: str, shards: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label int32, value float64 with NaN for missing, samples per shard) of every sample, in dataset order."""
    labels, values, sizes = [], [], []
    for shard in shards:
        meta = pl.read_parquet(root.meta_path(shard), columns=["__key__", "label"])
        scores = sidecars.read_score(root, score, shard, [column], keys=meta["__key__"])
        labels.append(meta["label"].cast(pl.Int32).to_numpy())
        values.append(scores[column].cast(pl.Float64).fill_null(float("nan")).to_numpy())
        sizes.append(meta.height)
    if not shards:
        return np.zeros(0, np.int32), np.zeros(0, np.float64), np.zeros(0, np.int64)
    return np.concatenate(labels), np.concatenate(values), np.asarray(sizes, dtype=np.int64)


def curriculum_split(root: str | Path, opts: CurriculumOptions = CurriculumOptions(), name: str = "curriculum", overwrite: bool = False, progress: bool = True) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet (__key__, subset); returns the figures."""
    opts.validate()
    root = Root(root)
    root.info()
    check_name(name)
    with writing(root, COMMAND):
        return split_subsets(root, opts.by, opts.subsets, opts.method, not opts.lower_is_cleaner, name, opts.split, opts.seed, overwrite, progress)


def split_subsets(root: Root, by: str, subsets: int, method: str, higher_is_cleaner: bool, name: str, split: str, seed: int, overwrite: bool, progress: bool) -> dict:
    started = time.time()
    score, column = parse_by(root, by, split)
    method = method if method != "auto" else ("kmeans" if column == "density" else "quantile")
    options = {"by": f"{score}:{column}", "subsets": subsets, "method": method, "higher_is_cleaner": higher_is_cleaner, "split": split, "seed": seed}
    sidecars.run_record(root, "scores", name, COMMAND).check(options, overwrite)  # refused before the work, recorded after
    shards = root.shard_names(split)
    labels, all_values, sizes = read_values(root, score, column, shards)
    subset = np.zeros(labels.size, dtype=np.int8)
    unsplit, missing = [], int(np.isnan(all_values).sum())
    order = np.argsort(labels, kind="stable")  # each class's samples together, in dataset order
    present, starts = np.unique(labels[order], return_index=True)
    bounds = np.append(starts, labels.size)
    del labels
    for label, start, end in tqdm(list(zip(present.tolist(), bounds[:-1], bounds[1:])), desc=f"curriculum {score}:{column}", unit="class", **bar_options(progress)):
        members = order[start:end]
        values = all_values[members]
        if method == "kmeans":
            if np.isnan(values).any():
                raise WvError(f"{score}:{column} has missing values in class {label}; k-means needs every sample's value")
            result = kmeans_subsets(values, subsets, seed)
        else:
            result = quantile_subsets(values, subsets, higher_is_cleaner)
        if result is None:
            unsplit.append(int(label))
            result = np.zeros(len(values), dtype=np.int8)
        subset[members] = result
    del order, all_values
    todo = sidecars.begin_run(root, "scores", name, options, overwrite, split, command=COMMAND)
    written = write_subsets(root, name, shards, subset, sizes, todo)
    kinds, counts = np.unique(subset, return_counts=True)
    return {
        "name": name,
        "by": f"{score}:{column}",
        "method": method,
        "subsets": subsets,
        "classes": len(present),
        "samples": int(subset.size),
        "per_subset": dict(zip(kinds.tolist(), counts.tolist())),
        "unsplit_classes": len(unsplit),
        "unsplit_labels": unsplit[:100],
        "missing_values": missing,
        "shards_written": written,
        "shards_skipped": len(shards) - written,
        "seconds": round(time.time() - started, 2),
        "paths": {"curriculum": str(sidecars.sidecar_dir(root, "scores", name))},
    }


def write_subsets(root: Root, name: str, shards: list[str], subset: np.ndarray, sizes: np.ndarray, todo: list[str]) -> int:
    wanted = set(todo)
    ends = np.cumsum(sizes)
    for shard, end, size in zip(shards, ends.tolist(), sizes.tolist()):
        if shard in wanted:
            keys = sidecars.shard_keys(root, shard)
            frame = pl.DataFrame({"__key__": keys, "subset": pl.Series(subset[end - size : end], dtype=pl.Int8)})
            sidecars.write_scores(root, name, shard, frame)
    return len(wanted)
