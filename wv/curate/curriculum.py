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
Memory: one label and one value per sample of the split.
"""

import time

import numpy as np
import polars as pl
from tqdm import tqdm

from wv.errors import WvError
from wv.progress import quiet
from wv.shards import sidecars
from wv.shards.root import Root

METHODS = ("auto", "kmeans", "quantile")


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


def read_values(root: Root, score: str, column: str, shards: list[str]) -> pl.DataFrame:
    """shard, row, label, value for every sample of the shards, in dataset order."""
    frames = []
    for position, shard in enumerate(shards):
        meta = pl.read_parquet(root.meta_path(shard), columns=["__key__", "label"])
        path = root.score_path(score, shard)
        if not path.is_file():
            raise WvError(f"score {score!r} is missing for {shard}; run its scorer first")
        values = pl.read_parquet(path, columns=["__key__", column])
        if not values["__key__"].equals(meta["__key__"]):
            raise WvError(f"{path} does not hold the shard's samples in shard order; re-run that scorer")
        frames.append(pl.DataFrame({"shard": pl.Series([position] * meta.height, dtype=pl.Int32),
                                    "row": pl.int_range(meta.height, dtype=pl.Int32, eager=True), "label": meta["label"].cast(pl.Int32),
                                    "value": values[column].cast(pl.Float64).fill_null(float("nan"))}))
    return pl.concat(frames)


def curriculum_split(root, by: str = "density", subsets: int = 3, method: str = "auto", higher_is_cleaner: bool = True,
          name: str = "curriculum", split: str = "train", seed: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet (__key__, subset); returns the figures."""
    if subsets < 2 or subsets > 100:
        raise WvError("--subsets must be between 2 and 100")
    if method not in METHODS:
        raise WvError(f"--method must be one of {', '.join(METHODS)}")
    root = Root(root)
    root.info()
    started = time.time()
    score, column = parse_by(root, by, split)
    method = method if method != "auto" else ("kmeans" if column == "density" else "quantile")
    options = {"by": f"{score}:{column}", "subsets": subsets, "method": method, "higher_is_cleaner": higher_is_cleaner,
               "split": split, "seed": seed}
    todo = sidecars.begin_run(root, "scores", name, options, overwrite, split)
    shards = root.shard_names(split)
    table = read_values(root, score, column, shards)
    subset = np.zeros(table.height, dtype=np.int8)
    unsplit, missing = [], int(table["value"].is_nan().sum())
    groups = table.with_row_index("at").partition_by("label", as_dict=True)
    for (label,), members in tqdm(sorted(groups.items()), desc=f"curriculum {score}:{column}", unit="class", **quiet(progress)):
        values = members["value"].to_numpy()
        if method == "kmeans":
            if np.isnan(values).any():
                raise WvError(f"{score}:{column} has missing values in class {label}; k-means needs every sample's value")
            result = kmeans_subsets(values, subsets, seed)
        else:
            result = quantile_subsets(values, subsets, higher_is_cleaner)
        if result is None:
            unsplit.append(int(label))
            result = np.zeros(len(values), dtype=np.int8)
        subset[members["at"].to_numpy()] = result
    table = table.with_columns(pl.Series("subset", subset, dtype=pl.Int8))
    written = write_subsets(root, name, shards, table, todo)
    counts = table.group_by("subset").len().sort("subset")
    return {"name": name, "by": f"{score}:{column}", "method": method, "subsets": subsets, "classes": len(groups),
            "samples": table.height, "per_subset": dict(zip(counts["subset"].to_list(), counts["len"].to_list())),
            "unsplit_classes": len(unsplit), "unsplit_labels": unsplit[:100], "missing_values": missing,
            "shards_written": written, "shards_skipped": len(shards) - written, "seconds": round(time.time() - started, 2),
            "paths": {"curriculum": str(sidecars.sidecar_dir(root, "scores", name))}}


def write_subsets(root: Root, name: str, shards: list[str], table: pl.DataFrame, todo: list[str]) -> int:
    wanted = set(todo)
    by_shard = table.partition_by("shard", as_dict=True)
    for position, shard in enumerate(shards):
        if shard in wanted:
            keys = sidecars.shard_keys(root, shard)
            sidecars.write_scores(root, name, shard, pl.DataFrame({"__key__": keys}).hstack(by_shard[(position,)].select("subset")))
    return len(wanted)
