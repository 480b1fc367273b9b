"""The per-sample metadata a sampler plans from: numpy columns in shard order, no Python object per sample.

Read once per process from ROOT/manifest.parquet (shard, index, offset, length, label) and the score
sidecars the config needs (selection.keep, curriculum.subset, gate / weight / carried columns).
Row r is the r-th sample of the split in (shard name, index) order, i.e. tar order within a shard.
At 16M samples the columns take about 30 bytes per sample (plus 4 per extra score column).
"""

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from wv.errors import WvError, damaged_root, first_line
from wv.shards import sidecars
from wv.shards.root import Root
from wv.stream.config import SamplerConfig


@dataclass
class SampleTable:
    root: str
    split: str
    shard_names: list
    shard_paths: list
    shard_start: np.ndarray  # int64, len shards + 1: rows of shard s are shard_start[s]:shard_start[s + 1]
    shard_bytes: np.ndarray  # int64, size of each tar
    shard_id: np.ndarray  # int32 per row
    offset: np.ndarray  # int64 per row: byte offset of the sample's first tar header
    length: np.ndarray  # int32 per row: bytes of all its members
    label: np.ndarray  # int32 per row
    class_names: dict  # label -> names
    keep: np.ndarray | None = None  # bool per row (the selection), None: no selection
    selection: str | None = None
    subset: np.ndarray | None = None  # int16 per row, -1 where missing
    subset_count: int | None = None  # the subsets the split made (its recorded --subsets), when known
    scores: dict = field(default_factory=dict)  # "score.column" -> float32 per row, NaN where missing
    draw_weight: np.ndarray | None = None  # float64 per row: a factor of the draw weight given by the caller (a task's)
    relabelled: int = 0  # rows whose label --labels replaced with another class

    @property
    def size(self) -> int:
        return int(self.label.shape[0])

    @property
    def shards(self) -> int:
        return len(self.shard_names)

    @property
    def classes(self) -> int:
        return max(len(self.class_names), int(self.label.max()) + 1 if self.size else 0)

    def nbytes(self) -> int:
        arrays = [self.shard_id, self.offset, self.length, self.label, self.keep, self.subset, self.draw_weight, *self.scores.values()]
        return sum(a.nbytes for a in arrays if a is not None)


def load_table(root, config: SamplerConfig) -> SampleTable:
    """The split's samples with what `config` needs, checked against the shards table."""
    root = Root(root)
    shards = root.shards(config.split)
    if shards.height == 0:
        raise WvError(f"{root.path} has no {config.split} shards")
    names = shards["name"].to_list()
    enum = pl.Enum(names)
    try:
        manifest = (
            root.manifest(config.split)
            .select(pl.col("shard").cast(enum).to_physical().alias("shard_id"), "index", "offset", "length", "label", sidecars.KEY_HASH.alias("key_hash"))
            .sort("shard_id", "index")
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as error:
        raise damaged_root(root.manifest_path, error) from None
    counts = np.bincount(manifest["shard_id"].to_numpy(), minlength=len(names))
    if not np.array_equal(counts, shards["samples"].to_numpy()):
        raise WvError(f"{root.manifest_path} does not agree with {root.shards_table_path}; run `wv shard verify {root.path}`")
    table = SampleTable(
        root=str(root.path),
        split=config.split,
        shard_names=names,
        shard_paths=[str(root.shard_path(n)) for n in names],
        shard_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        shard_bytes=shards["bytes"].to_numpy().astype(np.int64),
        shard_id=manifest["shard_id"].to_numpy().astype(np.int32),
        offset=manifest["offset"].to_numpy().astype(np.int64),
        length=manifest["length"].to_numpy().astype(np.int32),
        label=manifest["label"].to_numpy().astype(np.int32),
        class_names={c["label"]: c["names"] for c in root.classes()},
    )
    check_labels(root, table)
    key_hashes = manifest["key_hash"].to_numpy()
    del manifest
    if config.labels:
        substitute_labels(root, table, config.labels, key_hashes)
    selection = selection_name(root, config, names)
    if selection:
        table.keep = read_column(root, table, f"{selection}.keep", key_hashes).fill_null(True).cast(pl.Boolean).to_numpy()
        table.selection = selection
    if config.uses_subsets:
        subset = read_column(root, table, config.subsets, key_hashes)
        if not subset.dtype.is_integer():
            raise WvError(f"{config.subsets} must hold whole subset numbers (0 clean, 1 noisy, 2 very noisy)")
        table.subset = subset.fill_null(-1).cast(pl.Int16).to_numpy()
        table.subset_count = recorded_subsets(root, config.subsets.split(".")[0])
    for column in config.score_columns():
        values = read_column(root, table, column, key_hashes)
        if not (values.dtype.is_numeric() or values.dtype == pl.Boolean):
            raise WvError(f"{column} is not a number (it is {values.dtype}); gates, weights and carried columns must be numeric")
        table.scores[column] = values.cast(pl.Float32).fill_null(float("nan")).to_numpy()
    return table


def read_column(root: Root, table: SampleTable, qualified: str, key_hashes: np.ndarray) -> pl.Series:
    """score_column, with an unreadable sidecar (not parquet, cut short) as one sentence."""
    try:
        return score_column(root, table, qualified, key_hashes)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise WvError(f"the sidecars of score {qualified.partition('.')[0]!r} cannot be read ({first_line(error, 160)}); re-run its scorer with --overwrite") from None


def check_labels(root: Root, table: SampleTable) -> None:
    """Every label must be one of wv.json's classes (-1: no label)."""
    bad = table.label[(table.label < -1) | ((table.label >= 0) & ~np.isin(table.label, list(table.class_names)))]
    if bad.size:
        raise WvError(f"{root.manifest_path} holds label {int(bad[0])}, which is not one of the {len(table.class_names)} classes of {root.info_path}; the root is damaged (run `wv shard verify`)")


def substitute_labels(root: Root, table: SampleTable, qualified: str, key_hashes: np.ndarray) -> None:
    """--labels: each row's class from a score column (pseudo.label of `wv relabel`) where it is not
    null; the web label stays where it is. The column must hold classes of wv.json."""
    values = read_column(root, table, qualified, key_hashes)
    if not values.dtype.is_integer():
        raise WvError(f"--labels {qualified} must hold class numbers, but it is {values.dtype}; give a label column such as pseudo.label from `wv relabel`")
    present = values.is_not_null().to_numpy()
    new = values.fill_null(-1).to_numpy()
    bad = present & ~np.isin(new, list(table.class_names))
    if bad.any():
        raise WvError(f"--labels {qualified} holds class {int(new[bad][0])}, which is not one of the {len(table.class_names)} classes of {root.info_path}; it was made for another root")
    relabelled = present & (new != table.label)
    table.label = np.where(present, new, table.label).astype(np.int32)
    table.relabelled = int(relabelled.sum())


def recorded_subsets(root: Root, name: str) -> int | None:
    """How many subsets `wv curriculum split` made for scores/NAME (its recorded options), if it says."""
    try:
        options = json.loads((sidecars.sidecar_dir(root, "scores", name) / "_run.json").read_text())
    except (OSError, ValueError):
        return None
    subsets = options.get("subsets") if isinstance(options, dict) else None
    return subsets if type(subsets) is int and subsets > 0 else None


def selection_name(root: Root, config: SamplerConfig, shards: list) -> str | None:
    """auto: `selection` when `wv select` wrote one for this split (all of it, or the read fails)."""
    if config.selection == "none":
        return None
    if config.selection == "auto":
        return "selection" if any(root.score_path("selection", s).is_file() for s in shards) else None
    if not (root.path / "scores" / config.selection).is_dir():
        raise WvError(f"there is no selection {config.selection!r} under {root.path}/scores; run `wv select` first")
    return config.selection


def score_column(root: Root, table: SampleTable, qualified: str, key_hashes: np.ndarray) -> pl.Series:
    """One score column for every row, aligned with the table (same shard, same keys, same order)."""
    name, _, column = qualified.partition(".")
    available = sidecars.score_names(root)
    if name not in available:
        raise WvError(f"there is no score {name!r} under {root.path}/scores (have: {', '.join(available) or 'none'}); run its scorer first")
    scan = sidecars.read_scores(root, name, shards=table.shard_names)
    if column not in scan.collect_schema().names():
        raise WvError(f"score {name!r} has no column {column!r}")
    return sidecars.read_split_column(root, table.shard_names, qualified, key_hashes)
