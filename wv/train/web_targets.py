"""Targets from a sample's web text, looked up by the stream's `row` (split order) as TopicTargets are.

    KeywordTargets      the `keywords` sidecar (`wv score keywords`) over the vocabulary saved under
                        ROOT/models/keywords: multi-hot rows over that vocabulary (WeChat's WT-set)
    LabelWeightTargets  the `label_weights` sidecar (`wv score lda`): each sample's top-k classes and
                        their weights, scaled to sum to 1 (WeChat's LW-set)
A shard's targets are read when a batch first needs them and kept in a small cache (a rank reads a
few shards at a time, in its plan's order), so memory does not grow with the dataset.
"""

import functools
import json

import numpy as np
import polars as pl
import torch

from wv.curate.keywords import INFO_FILE as KEYWORDS_INFO
from wv.curate.keywords import NAME as KEYWORDS
from wv.curate.keywords import VOCABULARY_FILE, read_info
from wv.curate.lda import LABEL_WEIGHTS
from wv.errors import WvError
from wv.shards import sidecars
from wv.shards.root import Root

CACHED_SHARDS = 32


class ShardRows:
    """Row (split order) -> (shard number, row in the shard), with every shard's sidecar checked to exist."""

    def __init__(self, root: Root, split: str, score: str, scorer: str, columns: set):
        shards = root.shards(split)
        self.root, self.names = root, shards["name"].to_list()
        self.starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())]).astype(np.int64)
        missing = [n for n in self.names if not root.score_path(score, n).is_file()]
        if missing:
            raise WvError(f"score {score!r} is missing for {len(missing)} {split} shard(s), e.g. {missing[0]}; run `{scorer} {root.path}` first")
        for name in self.names:  # the footers only: a damaged file is named before the run writes anything
            path = root.score_path(score, name)
            try:
                schema = pl.read_parquet_schema(path)
            except (pl.exceptions.PolarsError, OSError):
                raise WvError(f"{path} is not a readable parquet file; re-run `{scorer} --overwrite`") from None
            if columns - set(schema):
                raise WvError(f"{path} has no column {sorted(columns - set(schema))[0]!r}; re-run `{scorer} --overwrite`")

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        return shard, rows - self.starts[shard]


class KeywordTargets:
    """Multi-hot keyword targets over the root's keyword vocabulary, and the per-sample draw weights."""

    def __init__(self, root, split: str):
        root = Root(root)
        folder = root.model_dir(KEYWORDS)
        info = read_info(folder)
        recorded = run_options(root, KEYWORDS)
        if recorded.get("vocabulary") not in (None, info["vocabulary_id"]):
            raise WvError(f"scores/keywords was made with another vocabulary than {folder / KEYWORDS_INFO}; re-run `wv score keywords --overwrite`")
        vocabulary = pl.read_parquet(folder / VOCABULARY_FILE, columns=["word", "docs"])
        if vocabulary.height == 0:
            raise WvError(f"the keyword vocabulary at {folder} is empty; lower --min-docs of `wv score keywords`")
        self.words = vocabulary["word"].to_list()
        self.docs = vocabulary["docs"].to_numpy().astype(np.float64)
        self.index = pl.DataFrame({"word": self.words, "k": np.arange(len(self.words), dtype=np.int32)})
        self.rows = ShardRows(root, split, KEYWORDS, "wv score keywords", {"keywords"})
        self.shard = functools.lru_cache(maxsize=CACHED_SHARDS)(self.read_shard)

    def read_shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(offsets [n + 1], keyword indices): sample i's keywords are indices[offsets[i]:offsets[i + 1]]."""
        frame = sidecars.read_score(self.rows.root, KEYWORDS, self.rows.names[s], ["keywords"])
        exploded = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("i"), pl.col("keywords").alias("word")).explode("word").join(self.index, on="word", how="inner", maintain_order="left")
        counts = np.bincount(exploded["i"].to_numpy(), minlength=frame.height)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), exploded["k"].to_numpy()

    def keyword_counts(self) -> np.ndarray:
        """Keywords per sample, for every row of the split (one pass over the sidecars)."""
        return np.concatenate([np.diff(self.read_shard(s)[0]) for s in range(len(self.rows.names))])

    def draw_weights(self, balance: bool) -> np.ndarray:
        """Per row: 0 without a keyword; else 1, or with `balance` the mean of 1 / (documents of the
        keyword) over its keywords, scaled so that the mean over samples with keywords is 1."""
        weights = []
        for s in range(len(self.rows.names)):
            offsets, indices = self.read_shard(s)
            counts = np.diff(offsets)
            if balance:
                owner = np.repeat(np.arange(len(counts)), counts)
                inverse = np.bincount(owner, weights=1.0 / np.maximum(self.docs[indices], 1), minlength=len(counts))
                w = np.where(counts > 0, inverse / np.maximum(counts, 1), 0.0)
            else:
                w = (counts > 0).astype(np.float64)
            weights.append(w)
        weights = np.concatenate(weights)
        positive = weights > 0
        return weights / weights[positive].mean() if positive.any() else weights

    def __call__(self, rows: torch.Tensor, device) -> torch.Tensor:
        """Multi-hot [B, vocabulary] on `device`."""
        shard, inside = self.rows.locate(rows.numpy())
        batch, columns = [], []
        for i, (s, r) in enumerate(zip(shard, inside)):
            offsets, indices = self.shard(int(s))
            found = indices[offsets[r] : offsets[r + 1]]
            batch.append(np.full(found.shape, i))
            columns.append(found)
        target = torch.zeros(len(shard), len(self.words), device=device)
        if columns:
            at = (torch.from_numpy(np.concatenate(batch)).to(device, non_blocking=True), torch.from_numpy(np.concatenate(columns).astype(np.int64)).to(device, non_blocking=True))
            target[at] = 1.0
        return target


class LabelWeightTargets:
    """Each sample's (classes, weights) from the label_weights sidecar; a sample the scorer could not
    score keeps its web label with weight 1 (a sample with neither weighs 0)."""

    def __init__(self, root, split: str, classes: int):
        self.rows = ShardRows(Root(root), split, LABEL_WEIGHTS, "wv score lda", {"label_topk", "weight_topk"})
        self.classes = classes
        self.shard = functools.lru_cache(maxsize=CACHED_SHARDS)(self.read_shard)

    def read_shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels [n, k] int32, -1 padding; weights [n, k] float32, NaN where the sample has none)."""
        name = self.rows.names[s]
        frame = sidecars.read_score(self.rows.root, LABEL_WEIGHTS, name, ["label_topk", "weight_topk"])
        k = max(1, int(frame["label_topk"].list.len().max() or 0))
        labels = np.full((frame.height, k), -1, dtype=np.int32)
        weights = np.full((frame.height, k), np.nan, dtype=np.float32)
        for i, (ids, ws) in enumerate(zip(frame["label_topk"].to_list(), frame["weight_topk"].to_list())):
            if ids is not None:
                labels[i, : len(ids)], weights[i, : len(ids)] = ids, ws
                weights[i, len(ids) :] = 0.0
        if (labels >= self.classes).any():
            raise WvError(f"scores/{LABEL_WEIGHTS}/{name} names class {int(labels.max())}, but the root has {self.classes}; re-run `wv score lda --overwrite`")
        return labels, weights

    def __call__(self, rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(target classes [B, k], weights [B, k]) on the CPU."""
        shard, inside = self.rows.locate(rows.numpy())
        found = [self.shard(int(s)) for s in shard]
        k = max(f[0].shape[1] for f in found)
        out_labels = np.full((len(shard), k), 0, dtype=np.int64)
        out_weights = np.zeros((len(shard), k), dtype=np.float32)
        for i, ((ids, ws), r) in enumerate(zip(found, inside)):
            if np.isnan(ws[r, 0]):  # not scored: the web label
                out_labels[i, 0], out_weights[i, 0] = max(int(labels[i]), 0), float(labels[i] >= 0)
            else:
                width = ids.shape[1]
                out_labels[i, :width], out_weights[i, :width] = np.maximum(ids[r], 0), ws[r]
        return torch.from_numpy(out_labels), torch.from_numpy(out_weights)


def run_options(root: Root, name: str) -> dict:
    path = sidecars.sidecar_dir(root, "scores", name) / "_run.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}
