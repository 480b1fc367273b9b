"""Per-shard sidecars: data about samples, stored beside the shards without rewriting them.

    ROOT/scores/{name}/{shard}.parquet    __key__ + score columns, same rows and order as the shard
    ROOT/features/{name}/{shard}.npy      one embedding row per sample, same order as the shard
    ROOT/{scores|features}/{name}/_run.json   the options that produced them

Writers check the keys against the shard's own (from meta/{shard}.parquet), so a sidecar can never
be joined to the wrong samples. A scorer re-run with the same options skips complete shards; with
other options it is refused unless the caller asks to overwrite.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from wv.errors import WvError
from wv.io import atomic_path, write_json, write_parquet
from wv.shards.root import Root

KINDS = ("scores", "features")


def shard_keys(root: Root, shard: str) -> pl.Series:
    path = root.meta_path(shard)
    if not path.is_file():
        raise WvError(f"{path} is missing; re-run `wv shard build` to repair the root")
    return pl.read_parquet(path, columns=["__key__"])["__key__"]


def write_scores(root: Root, name: str, shard: str, frame: pl.DataFrame) -> Path:
    """Write one shard's scores; `frame` must have __key__ in the shard's order."""
    keys = shard_keys(root, shard)
    if "__key__" not in frame.columns or frame.height != keys.len() or not frame["__key__"].equals(keys):
        raise ValueError(f"scores for {shard} must have the shard's {keys.len()} keys in shard order")
    path = root.score_path(name, shard)
    write_parquet(path, frame.select("__key__", pl.exclude("__key__")))
    return path


def read_scores(root: Root, name: str, shards=None, split: str | None = None, columns=None) -> pl.LazyFrame:
    """A score for the whole dataset (or the given shards), in shard order, with a `shard` column."""
    names = list(shards) if shards is not None else root.shard_names(split)
    paths = [root.score_path(name, s) for s in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise WvError(f"score {name!r} is missing for {len(missing)} shard(s), e.g. {missing[0].stem}; run the scorer first")
    scan = pl.scan_parquet(paths, include_file_paths="_file")
    scan = scan.with_columns(pl.col("_file").str.extract(r"([^/\\]+)\.parquet$", 1).alias("shard")).drop("_file")
    return scan if columns is None else scan.select("__key__", "shard", *columns)


def score_names(root: Root) -> list[str]:
    folder = root.path / "scores"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def write_features(root: Root, name: str, shard: str, features: np.ndarray) -> Path:
    expected = shard_keys(root, shard).len()
    if features.ndim != 2 or features.shape[0] != expected:
        raise ValueError(f"features for {shard} must be ({expected}, dim), got {features.shape}")
    path = root.features_path(name, shard)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, features)
    return path


def read_features(root: Root, name: str, shard: str, mmap: bool = True) -> np.ndarray:
    path = root.features_path(name, shard)
    if not path.is_file():
        raise WvError(f"features {name!r} are missing for {shard}; run `wv embed` first")
    return np.load(path, mmap_mode="r" if mmap else None)


def sidecar_dir(root: Root, kind: str, name: str) -> Path:
    assert kind in KINDS
    return root.path / kind / name


def complete(root: Root, kind: str, name: str, shard: str, samples: int) -> bool:
    """Whether a shard's sidecar exists with the right number of rows (cheap: file metadata only)."""
    if kind == "scores":
        path = root.score_path(name, shard)
        return path.is_file() and pl.scan_parquet(path).select(pl.len()).collect().item() == samples
    path = root.features_path(name, shard)
    if not path.is_file():
        return False
    try:
        return np.load(path, mmap_mode="r").shape[0] == samples
    except (ValueError, OSError):
        return False


def begin_run(root: Root, kind: str, name: str, options: dict, overwrite: bool = False, split: str | None = None) -> list[str]:
    """Record a scorer's options; return the shards still to do.

    Same options as last time: resume (complete shards are skipped). Other options: refused.
    `overwrite` deletes the old sidecars first and starts again.
    """
    folder = sidecar_dir(root, kind, name)
    run_file = folder / "_run.json"
    if overwrite and folder.is_dir():
        shutil.rmtree(folder)
    elif run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous != json.loads(json.dumps(options)):
            changed = sorted(k for k in set(previous) | set(options) if previous.get(k) != options.get(k))
            raise WvError(
                f"{kind}/{name} was made with other options ({', '.join(changed)}); "
                "pass --overwrite to replace it, or choose another --name"
            )
    write_json(run_file, options)
    shards = root.shards(split)
    return [row["name"] for row in shards.iter_rows(named=True) if not complete(root, kind, name, row["name"], row["samples"])]
