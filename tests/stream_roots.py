"""A small imbalanced dataset root with the sidecars the sampler reads, written by the tests themselves.

scores/curriculum/{shard}.parquet   subset: 0 clean, 1 label flip, 2 outlier (from the ground truth)
scores/synthetic/{shard}.parquet    p: a confidence-like score (about 0.75 clean, 0.25 noisy)
scores/selection/{shard}.parquet    keep: written per test where a test wants one (see write_selection)
"""

import shutil

import numpy as np
import polars as pl
import pytest

from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth

SUBSET_OF = {"clean": 0, "flip": 1, "outlier": 2}


def shard_truth(root: Root, synth, shard: str) -> pl.DataFrame:
    truth = pl.read_parquet(synth / "ground_truth.parquet").select("__key__", "noise", "label")
    return sidecars.shard_keys(root, shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")


def write_curriculum_and_score(root, synth, seed=0) -> None:
    root = Root(root)
    rng = np.random.default_rng(seed)
    for shard in root.shard_names("train"):
        frame = shard_truth(root, synth, shard)
        subset = frame["noise"].replace_strict(SUBSET_OF, return_dtype=pl.Int8)
        noisy = (subset > 0).cast(pl.Float64).to_numpy()
        p = np.clip(0.75 - 0.5 * noisy + rng.normal(0, 0.12, frame.height), 0, 1)
        sidecars.write_scores(root, "curriculum", shard, frame.select("__key__").with_columns(subset.alias("subset")))
        sidecars.write_scores(root, "synthetic", shard, frame.select("__key__").with_columns(pl.Series("p", p, dtype=pl.Float32)))


def write_selection(root, keep_fn, name="selection") -> None:
    """keep_fn(shard_index, frame with __key__, label) -> bool numpy array."""
    root = Root(root)
    labels = root.manifest("train").select("__key__", "label").collect()
    for i, shard in enumerate(root.shard_names("train")):
        frame = sidecars.shard_keys(root, shard).to_frame().join(labels, on="__key__", how="left", maintain_order="left")
        keep = np.asarray(keep_fn(i, frame), dtype=bool)
        sidecars.write_scores(root, name, shard, frame.select("__key__").with_columns(pl.Series("keep", keep), pl.Series("rule", [None if k else "test" for k in keep], dtype=pl.String)))


@pytest.fixture
def selection_writer():
    """write_selection(root, keep_fn), for tests that change a root's selection."""
    return write_selection


@pytest.fixture(scope="session")
def stream_synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "synth"
    write_synth(out, SynthOptions(classes=8, per_class=60, noise=0.3, imbalance=4.0, val_per_class=0, width=32, height=24, seed=5))
    return out


@pytest.fixture(scope="session")
def stream_root(stream_synth, tmp_path_factory):
    """Train shards of 37 (uneven last shard), curriculum subsets and a score. Read-only."""
    root = tmp_path_factory.mktemp("stream") / "root"
    build(stream_synth, root, BuildOptions(split="train", shard_size=37), workers=1, progress=False)
    write_curriculum_and_score(root, stream_synth)
    return root


@pytest.fixture
def stream_root_copy(stream_root, tmp_path):
    return shutil.copytree(stream_root, tmp_path / "root")


@pytest.fixture(scope="session")
def uneven_root(stream_root, tmp_path_factory):
    """stream_root with a selection that makes the shards very uneven: shard 0 whole, shard 1 a
    tenth, shard 2 nothing, shard 3 a third, the rest half. Read-only."""
    root = shutil.copytree(stream_root, tmp_path_factory.mktemp("stream") / "uneven")
    fractions = {0: 1.0, 1: 0.1, 2: 0.0, 3: 1 / 3}
    write_selection(root, lambda i, frame: np.arange(frame.height) < round(fractions.get(i, 0.5) * frame.height))
    return root
