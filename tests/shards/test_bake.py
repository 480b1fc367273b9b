"""`wv shard bake`: shards with KEY.scores.json, read by plain webdataset, a valid dataset root of its
own (verify passes), images copied byte for byte, chosen scores, resume after a kill, bad input.

The scores are written by the test itself (the bake does not care where a score comes from): a float
with a NaN, an int, a list of strings, and for the val split nothing.
"""

import hashlib
import json
import shutil

import numpy as np
import polars as pl
import pytest
import webdataset as wds

from wv.shards import sidecars
from wv.shards.bake import bake
from wv.shards.read import read_sample
from wv.shards.root import Root
from wv.shards.verify import verify


def write_scores(root):
    root = Root(root)
    rng = np.random.default_rng(0)
    for shard in root.shard_names("train"):
        keys = sidecars.shard_keys(root, shard)
        values = rng.random(keys.len())
        values[0] = np.nan
        sidecars.write_scores(root, "alpha", shard, keys.to_frame().with_columns(pl.Series("value", values, dtype=pl.Float32), pl.Series("rank", np.arange(keys.len()), dtype=pl.Int32)))
        sidecars.write_scores(root, "words", shard, keys.to_frame().with_columns(pl.Series("keywords", [[k[:6], "x"] for k in keys], dtype=pl.List(pl.String))))


@pytest.fixture(scope="module")
def scored_root(built_root, tmp_path_factory):
    root = shutil.copytree(built_root, tmp_path_factory.mktemp("bake") / "root")
    write_scores(root)
    return root


@pytest.fixture(scope="module")
def baked(scored_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("baked") / "out"
    figures = bake(scored_root, out, workers=2, progress=False)
    return out, figures


def test_baked_root_verifies_and_says_what_it_holds(baked):
    out, figures = baked
    result = verify(out, workers=1, progress=False)
    assert result["ok"], result["problems"][:5]
    info = Root(out).info()
    assert info["sample_parts"] == ["cls", "jpg", "json", "scores.json", "txt"] and info["baked"]["complete"]
    assert figures["scores"] == {"train": ["alpha", "words"], "val": []}
    assert figures["left_out"] == {"alpha": ["val: missing for 1 of 1 shards"], "words": ["val: missing for 1 of 1 shards"]}


def test_plain_webdataset_reads_every_sample_with_its_scores(baked, scored_root):
    out, _ = baked
    source = Root(scored_root)
    urls = [str(Root(out).shard_path(name)) for name in Root(out).shard_names()]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    expected = {}
    for shard in source.shard_names("train"):
        alpha = pl.read_parquet(source.score_path("alpha", shard))
        words = pl.read_parquet(source.score_path("words", shard))
        for a, w in zip(alpha.iter_rows(named=True), words.iter_rows(named=True)):
            value = None if a["value"] != a["value"] else a["value"]
            expected[a["__key__"]] = {"alpha": {"value": value, "rank": a["rank"]}, "words": {"keywords": w["keywords"]}}
    assert len(samples) == source.manifest().select(pl.len()).collect().item()
    for sample in samples:
        scores = sample["scores.json"]
        if sample["__key__"].startswith("val"):
            assert scores == {}
            continue
        want = expected[sample["__key__"]]
        assert scores["words"] == want["words"] and scores["alpha"]["rank"] == want["alpha"]["rank"]
        assert (scores["alpha"]["value"] is None) == (want["alpha"]["value"] is None)
        if want["alpha"]["value"] is not None:
            assert scores["alpha"]["value"] == pytest.approx(want["alpha"]["value"])
    assert sum(s["scores.json"].get("alpha", {}).get("value", 0) is None for s in samples) == len(source.shard_names("train"))


def test_images_and_members_are_copied_byte_for_byte(baked, scored_root):
    out, _ = baked
    manifest = Root(out).manifest().collect()
    old = Root(scored_root).manifest().collect()
    assert manifest.drop("offset", "length").equals(old.drop("offset", "length"))
    assert (manifest["length"] > old["length"]).all()
    for key in manifest["__key__"].gather([0, 7, manifest.height - 1]):
        new_sample, old_sample = read_sample(out, key), read_sample(scored_root, key)
        assert {k: v for k, v in new_sample.items() if k != "scores.json"} == old_sample
    table = Root(out).shards()
    for row in table.iter_rows(named=True):
        data = Root(out).shard_path(row["name"]).read_bytes()
        assert len(data) == row["bytes"] and hashlib.sha256(data).hexdigest() == row["sha256"]
    for name in ("alpha", "words"):
        assert sidecars.read_scores(Root(out), name, split="train").collect().equals(sidecars.read_scores(Root(scored_root), name, split="train").collect())


def test_chosen_scores_resume_and_bad_input(scored_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "out"
    result = wv_cli("shard", "bake", scored_root, out, "--scores", "words", "--split", "train", "--workers", "1", "--json")
    figures = last_json(result.stdout)
    assert result.exit_code == 0 and figures["scores"] == {"train": ["words"]} and figures["shards_written"] == figures["shards"]
    first = Root(out).shard_names()[0]
    sample = next(iter(wds.WebDataset(str(Root(out).shard_path(first)), shardshuffle=False).decode()))
    assert list(sample["scores.json"]) == ["words"]
    table = Root(out).shards()
    # As if killed while writing the first shard: its tar and ledger entry are gone.
    Root(out).shard_path(first).unlink()
    (out / ".bake" / f"{first}.done.json").unlink()
    result = wv_cli("shard", "bake", scored_root, out, "--scores", "words", "--split", "train", "--json")
    assert result.exit_code == 0 and last_json(result.stdout)["shards_written"] == 1
    assert Root(out).shards().equals(table) and verify(out, progress=False)["ok"]

    result = wv_cli("shard", "bake", scored_root, out, "--scores", "alpha", "--split", "train")
    assert result.exit_code == 2 and "bake into a new folder" in result.stderr
    result = wv_cli("shard", "bake", scored_root, tmp_path / "other", "--scores", "words")
    assert result.exit_code == 2 and "missing for 1 val shard" in result.stderr
    result = wv_cli("shard", "bake", scored_root, tmp_path / "other", "--scores", "nope")
    assert result.exit_code == 2 and "no score 'nope'" in result.stderr
    result = wv_cli("shard", "bake", scored_root, scored_root)
    assert result.exit_code == 2 and "new folder" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = wv_cli("shard", "bake", scored_root, tmp_path / "full")
    assert result.exit_code == 2 and "not empty" in result.stderr and "Traceback" not in result.output


def test_baked_samples_pass_through_wv_reader(baked):
    out, _ = baked
    key = Root(out).manifest("train").select("__key__").collect()["__key__"][3]
    sample = read_sample(out, key)
    assert set(sample) == {"__key__", "cls", "jpg", "json", "scores.json", "txt"}
    assert json.loads(sample["scores.json"])["words"]["keywords"][1] == "x"


def test_help_has_an_example(wv_cli):
    result = wv_cli("shard", "bake", "--help")
    assert result.exit_code == 0 and "Example:" in result.output
