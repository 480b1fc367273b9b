"""Per-shard sidecars: data about samples, stored beside the shards without rewriting them.

    ROOT/scores/{name}/{shard}.parquet    __key__ + score columns, same rows and order as the shard
    ROOT/features/{name}/{shard}.npy      one embedding row per sample, same order as the shard
    ROOT/{scores|features}/{name}/_run.json   the options that produced them

Writers and readers check the keys against the shard's own (from meta/{shard}.parquet), so a
sidecar can never be joined to the wrong samples: `read_score` / `read_columns` (one shard) and
`read_split_column` (a whole split, for the sampler) are the only readers of score values, and
`misaligned` the one key check. A scorer re-run with the same options skips complete shards; with
other options it is refused unless the caller asks to overwrite (wv.shards.runrecord).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from wv.atomic import atomic_path, write_parquet
from wv.errors import WvError
from wv.shards.root import NAME, Root, check_name
from wv.shards.runrecord import RunRecord

KINDS = ("scores", "features")
KEY_HASH = pl.col("__key__").hash(seed=7)  # compares a split's keys without holding its strings


def shard_keys(root: Root, shard: str) -> pl.Series:
    path = root.meta_path(shard)
    if not path.is_file():
        raise WvError(f"{path} is missing; re-run `wv shard build` to repair the root")
    return pl.read_parquet(path, columns=["__key__"])["__key__"]


# -- the key check ----------------------------------------------------------------------------------
def misaligned(found: pl.Series, expected: pl.Series) -> str | None:
    """How a sidecar's keys differ from its shard's (None: the same keys in the same order)."""
    if found.len() != expected.len():
        return f"{found.len()} rows for its {expected.len()} samples"
    if found.equals(expected):
        return None
    return "its rows in another order" if found.sort().equals(expected.sort()) else "other keys than its samples"


def misaligned_error(path: Path, shard: str, how: str) -> WvError:
    return WvError(f"{path} does not match the samples of shard {shard} ({how}); re-run the command that made it with --overwrite")


def check_aligned(path: Path, shard: str, found: pl.Series, expected: pl.Series) -> None:
    how = misaligned(found, expected)
    if how:
        raise misaligned_error(path, shard, how)


# -- reading score values -----------------------------------------------------------------------------
def read_score(root: Root, name: str, shard: str, columns: Sequence[str] | None = None, keys: pl.Series | None = None) -> pl.DataFrame:
    """__key__ and `columns` (default: all) of one shard's score `name`, checked against the shard's keys
    (`keys`, or read from meta/{shard}.parquet)."""
    path = root.score_path(name, shard)
    if not path.is_file():
        raise WvError(f"score {name!r} is missing for {shard}; run its scorer first")
    wanted = None if columns is None else ["__key__", *dict.fromkeys(c for c in columns if c != "__key__")]
    try:
        frame = pl.read_parquet(path, columns=wanted)
    except pl.exceptions.ColumnNotFoundError:
        have = [c for c in pl.read_parquet_schema(path) if c != "__key__"]
        raise WvError(f"score {name!r} has no column {sorted(set(wanted) - set(have) - {'__key__'})[0]!r}; it has {', '.join(have)}") from None
    except (pl.exceptions.PolarsError, OSError):
        raise WvError(f"{path} is not a readable parquet file; re-run the command that made it with --overwrite") from None
    check_aligned(path, shard, frame["__key__"], shard_keys(root, shard) if keys is None else keys)
    return frame


def read_columns(root: Root, shard: str, qualified: Sequence[str], keys: pl.Series | None = None) -> pl.DataFrame:
    """__key__ and each `SCORE.COLUMN` of `qualified` (so named) for one shard, in shard order."""
    keys = shard_keys(root, shard) if keys is None else keys
    frame = pl.DataFrame({"__key__": keys})
    by_score: dict[str, list] = {}
    for name, _, column in (q.partition(".") for q in qualified):
        by_score.setdefault(name, []).append(column)
    for name, wanted in by_score.items():
        scores = read_score(root, name, shard, wanted, keys).drop("__key__")
        frame = frame.hstack(scores.rename({c: f"{name}.{c}" for c in scores.columns}))
    return frame


def read_split_column(root: Root, shards: list[str], qualified: str, key_hashes: np.ndarray) -> pl.Series:
    """One `SCORE.COLUMN` over `shards` (concatenated in that order), checked row for row against the
    samples' key hashes (KEY_HASH of the manifest in the same order): one scan, no key strings held."""
    name, _, column = qualified.partition(".")
    try:
        frame = read_scores(root, name, shards).select(KEY_HASH.alias("_hash"), pl.col(column)).collect()
    except (pl.exceptions.PolarsError, OSError):
        frame = None  # a missing column or a damaged file: the shard-by-shard read names it
    if frame is None or not np.array_equal(frame["_hash"].to_numpy(), key_hashes):
        for shard in shards:
            read_score(root, name, shard, [column])
        raise WvError(f"scores/{name} does not hold one row per sample in shard order; re-run its scorer with --overwrite")
    return frame[column]


def write_scores(root: Root, name: str, shard: str, frame: pl.DataFrame) -> Path:
    """Write one shard's scores; `frame` must have __key__ in the shard's order."""
    keys = shard_keys(root, shard)
    if "__key__" not in frame.columns or frame.height != keys.len() or not frame["__key__"].equals(keys):
        raise ValueError(f"scores for {shard} must have the shard's {keys.len()} keys in shard order")
    path = root.score_path(name, shard)
    write_parquet(path, frame.select("__key__", pl.exclude("__key__")))
    return path


def read_scores(root: Root, name: str, shards: Sequence[str] | None = None, split: str | None = None, columns: Sequence[str] | None = None) -> pl.LazyFrame:
    """A score for the whole dataset (or the given shards), in shard order, with a `shard` column."""
    names = list(shards) if shards is not None else root.shard_names(split)
    paths = [root.score_path(name, s) for s in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise WvError(f"score {name!r} is missing for {len(missing)} shard(s), e.g. {missing[0].stem}; run the scorer first")
    scan = pl.scan_parquet(paths, include_file_paths="_file")
    scan = scan.with_columns(pl.col("_file").str.extract(r"([^/\\]+)\.parquet$", 1).alias("shard")).drop("_file")
    return scan if columns is None else scan.select("__key__", "shard", *[c for c in columns if c not in ("__key__", "shard")])


def sidecar_names(root: Root, kind: str = "scores") -> list[str]:
    """The sidecar folders of a kind (folders whose name is not a plain name, e.g. hidden ones, are not sidecars)."""
    folder = root.path / kind
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and NAME.fullmatch(p.name)) if folder.is_dir() else []


def score_names(root: Root) -> list[str]:
    return sidecar_names(root, "scores")


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
    if kind not in KINDS:
        raise ValueError(f"sidecar kind must be one of {KINDS}, not {kind!r}")
    return root.path / kind / check_name(name)


def run_record(root: Root, kind: str, name: str, command: str) -> RunRecord:
    return RunRecord(sidecar_dir(root, kind, name), command, f"{kind}/{name}")


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


def begin_run(root: Root, kind: str, name: str, options: dict, overwrite: bool = False, split: str | None = None, *, command: str) -> list[str]:
    """Record a command's options for ROOT/{kind}/{name}; return the shards still to do.

    Call it once the run has passed its checks. Same options as last time: resume (complete shards
    are skipped). Other options: refused. `overwrite` deletes the old sidecars first and starts
    again, unless another command made them (never replaced).
    """
    run_record(root, kind, name, command).start(options, overwrite)
    shards = root.shards(split)
    return [row["name"] for row in shards.iter_rows(named=True) if not complete(root, kind, name, row["name"], row["samples"])]
