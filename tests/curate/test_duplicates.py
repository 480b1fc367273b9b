"""`wv score duplicates`: the exact rule (bytes, pixel hash), near groups, representatives, train/val
leaks, --against, the approximate search, resume, and `wv select` / `wv audit` over the sidecar, on a
`wv synth --duplicates` root whose planted copies are the ground truth."""

import io
import itertools
import shutil

import numpy as np
import polars as pl
import pytest
from PIL import Image

from wv.curate import duplicates as duplicates_module
from wv.curate.duplicates_core import bytes_hash, equal_value_edges, merge_groups, pixel_hash, representatives
from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.read import shard_samples
from wv.shards.root import Root
from wv.synth import EXACT_KINDS, SynthOptions, jpeg_bytes, write_synth

CACHE = {}


def thumbnail_features(data: bytes) -> np.ndarray:
    """Stand-in image features: a mean-centred 16 x 12 colour thumbnail (what bench/duplicates.py uses)."""
    with Image.open(io.BytesIO(data)) as image:
        x = np.asarray(image.convert("RGB").resize((16, 12), Image.Resampling.BOX), np.float32)
    return (x - x.mean(axis=(0, 1))).reshape(-1)


@pytest.fixture(scope="module")
def dup_root(tmp_path_factory):
    """(root with features `pix` for train and val, synth folder): 3 classes x 40, 25% planted copies."""
    if "root" not in CACHE:
        base = tmp_path_factory.mktemp("duplicates")
        synth, root = base / "synth", base / "root"
        write_synth(synth, SynthOptions(classes=3, per_class=40, noise=0.1, val_per_class=4, duplicates=0.25, seed=2))
        for split in ("train", "val"):
            build(synth, root, BuildOptions(split=split, shard_size=40), workers=1, progress=False)
        r = Root(root)
        for shard in r.shard_names():
            rows = [thumbnail_features(s["jpg"]) for s in shard_samples(r.shard_path(shard))]
            sidecars.write_features(r, "pix", shard, np.stack(rows).astype(np.float16))
        CACHE["root"] = (root, synth)
    return CACHE["root"]


@pytest.fixture
def root(dup_root, tmp_path):
    return shutil.copytree(dup_root[0], tmp_path / "root")


def pairs(frame: pl.DataFrame, column: str) -> set:
    groups = frame.filter(pl.col(column).is_not_null()).group_by(column).agg("__key__")["__key__"]
    return {tuple(sorted(p)) for keys in groups for p in itertools.combinations(keys, 2)}


def scored(root, name="duplicates", split=None) -> pl.DataFrame:
    return sidecars.read_scores(Root(root), name, split=split).collect()


# -- the rules on plain values ----------------------------------------------------------------------------------
def test_identical_bytes_are_exact_and_most_recompressed_copies_keep_their_pixel_hash():
    """The pixel hash is a 64-bit DCT hash: a re-encoded copy keeps it unless a coefficient sits at the
    median (then the near rule, on features, still groups the copy): seeded, most of them keep it."""
    rng = np.random.default_rng(0)
    kept, hashes = 0, set()
    for _ in range(20):
        smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((320, 240), Image.Resampling.BICUBIC))
        original = jpeg_bytes(smooth, 90)
        assert bytes_hash(original) == bytes_hash(jpeg_bytes(smooth, 90)) != bytes_hash(jpeg_bytes(smooth, 75))
        kept += pixel_hash(original)[0] == pixel_hash(jpeg_bytes(smooth, 75))[0]
        hashes.add(pixel_hash(original)[0])
    assert kept >= 13 and len(hashes) == 20
    assert pixel_hash(jpeg_bytes(np.zeros((150, 200, 3), np.uint8)))[1:] == (200, 150)


def test_groups_are_components_labelled_by_their_smallest_index_and_keep_the_largest_then_lowest_key():
    labels = merge_groups(np.arange(6), np.array([4, 1]), np.array([2, 4]))
    np.testing.assert_array_equal(labels, [0, 1, 1, 3, 1, 5])
    i, j = equal_value_edges(np.array([7, 3, 7, 3, 9]))
    np.testing.assert_array_equal(merge_groups(np.arange(5), i, j), [0, 1, 0, 1, 4])
    area = np.array([10, 50, 50, 1, 20, 1])
    key_rank = np.array([1, 3, 2, 4, 5, 6])
    np.testing.assert_array_equal(representatives(labels, area, key_rank), [True, False, True, True, False, True])


# -- the command on planted copies --------------------------------------------------------------------------------
def test_planted_copies_are_found_within_splits_and_leaks_into_val_are_marked(root, dup_root, wv_cli, last_json):
    result = wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["mode"] == "exact" and figures["shards_written"] == len(Root(root).shard_names())
    truth = pl.read_parquet(dup_root[1] / "ground_truth.parquet")
    split = dict(zip(truth["__key__"], truth["split"]))
    copies = truth.filter(pl.col("duplicate_of").is_not_null())
    planted = {tuple(sorted(p)) for p in copies.select("__key__", "duplicate_of").iter_rows()}
    within = {p for p in planted if split[p[0]] == split[p[1]]}
    frame = scored(root)
    # exact: every identical copy; recompressed and resized ones when their pixel hash held; nothing else
    exact = pairs(frame, "exact_group")
    sure = {tuple(sorted((a, b))) for a, b, k in copies.select("__key__", "duplicate_of", "copy_kind").iter_rows() if split[a] == split[b] and k == "identical"}
    assert sure and sure <= exact and exact <= planted
    assert {k for k in copies.filter(pl.col("copy_kind").is_in(EXACT_KINDS))["copy_kind"]} == set(EXACT_KINDS)
    # near: nothing but planted copies; all of them but crops (the stand-in thumbnail features are not shift-invariant)
    near = pairs(frame, "near_group")
    uncropped = {tuple(sorted((a, b))) for a, b, k in copies.select("__key__", "duplicate_of", "copy_kind").iter_rows() if split[a] == split[b] and k != "cropped"}
    assert uncropped <= near <= within and exact <= near
    # one representative per group, the largest image, and group sizes agree
    grouped = frame.filter(pl.col("near_group").is_not_null())
    assert grouped.group_by("near_group").agg(pl.col("representative").sum())["representative"].to_list() == [1] * len(near)
    assert (frame["redundant"] == ~frame["representative"]).all() and frame["redundant"].sum() == len(near)
    assert (grouped.filter(pl.col("representative"))["__key__"] == grouped.filter(pl.col("representative"))["near_group"]).all()
    sizes = Root(root).manifest().select("__key__", (pl.col("width") * pl.col("height")).alias("area")).collect()
    reps = grouped.join(sizes, on="__key__").group_by("near_group").agg(pl.col("area").max().alias("largest"), pl.col("area").filter(pl.col("representative")).first().alias("kept"))
    assert (reps["largest"] == reps["kept"]).all()
    # leaks: the train original of every copy planted into val (but crops), with that copy as its nearest val sample
    into_val = copies.filter(pl.col("copy_place") == "val").select(pl.col("duplicate_of").alias("__key__"), pl.col("__key__").alias("copy"), "copy_kind")
    assert into_val.filter(pl.col("copy_kind") != "cropped").height
    train = scored(root, split="train")
    leaked = set(train.filter(pl.col("leaks"))["__key__"])
    assert set(into_val.filter(pl.col("copy_kind") != "cropped")["__key__"]) <= leaked <= set(into_val["__key__"])
    checked = into_val.filter(pl.col("__key__").is_in(leaked)).join(train, on="__key__")
    assert (checked["other_key"] == checked["copy"]).all() and (checked["other_similarity"] >= 0.9).all()
    assert train["other_key"].null_count() == 0 and train["against_key"].null_count() == train.height


def test_against_features_mark_the_train_samples_they_copy(root, tmp_path, wv_cli, last_json):
    r = Root(root)
    shard = r.shard_names("train")[1]
    stored = sidecars.read_features(r, "pix", shard).astype(np.float32)
    keys = sidecars.shard_keys(r, shard).to_list()
    rng = np.random.default_rng(0)
    outside = np.concatenate([stored[[3, 7]] + rng.normal(0, 1, (2, stored.shape[1])), rng.normal(0, 50, (5, stored.shape[1]))])
    np.save(tmp_path / "test-set.npy", outside.astype(np.float32))
    args = ("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--workers", "1", "--json")
    figures = last_json(wv_cli(*args, "--against", tmp_path / "test-set.npy").stdout)
    assert figures["samples"]["against"] == 7
    frame = scored(root, split="train").filter(pl.col("against_similarity") >= 0.9)
    assert {keys[3], keys[7]} <= set(frame["__key__"])
    assert set(frame.filter(pl.col("__key__").is_in([keys[3], keys[7]]))["against_key"]) == {"test-set.npy#0", "test-set.npy#1"}
    assert scored(root).filter(pl.col("__key__") == keys[3])["leaks"].item()
    pl.DataFrame({"__key__": ["a", "b"], "features": outside[:2].tolist()}).write_parquet(tmp_path / "test-set.parquet")
    result = wv_cli(*args, "--against", tmp_path / "test-set.parquet", "--name", "dup2")
    assert result.exit_code == 0, result.output
    assert set(scored(root, "dup2").filter(pl.col("__key__").is_in([keys[3], keys[7]]))["against_key"]) == {"a", "b"}
    bad = wv_cli(*args, "--against", tmp_path / "missing.npy", "--name", "dup3")
    assert bad.exit_code == 2 and "does not exist" in bad.stderr and not (r.path / "scores" / "dup3").exists()


def test_the_approximate_search_finds_the_same_groups(root, monkeypatch, wv_cli, last_json):
    wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--workers", "1")
    monkeypatch.setattr(duplicates_module, "CELL_SAMPLES", 30)
    result = wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--mode", "approximate", "--name", "approx", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["cells"] > 3
    exact, approx = scored(root), scored(root, "approx")
    assert pairs(approx, "near_group") == pairs(exact, "near_group")
    assert (approx["leaks"] == exact["leaks"]).all()


def test_a_rerun_resumes_other_options_are_refused_and_overwrite_replaces(root, wv_cli, last_json):
    args = ("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--workers", "1", "--json")
    assert wv_cli(*args).exit_code == 0
    r = Root(root)
    path = r.score_path("duplicates", r.shard_names("train")[2])
    before = pl.read_parquet(path)
    path.unlink()
    figures = last_json(wv_cli(*args).stdout)
    assert figures["shards_written"] == 1 and figures["shards_skipped"] == len(r.shard_names()) - 1
    assert pl.read_parquet(path).equals(before)
    refused = wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.8")
    assert refused.exit_code == 2 and "other options" in refused.stderr
    assert wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.8", "--overwrite", "--workers", "1").exit_code == 0
    assert not (r.path / "scores" / "duplicates" / "_hashes").exists()


def test_select_drops_the_redundant_and_the_leaks_and_the_audit_shows_them(root, wv_cli, last_json):
    assert wv_cli("score", "duplicates", root, "--features", "pix", "--threshold", "0.9", "--workers", "1").exit_code == 0
    result = wv_cli("select", root, "--drop", "duplicates.redundant", "--drop", "duplicates.leaks", "--max-drop-fraction", "1", "--min-per-class", "0", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    train = scored(root, split="train")
    chosen = scored(root, "selection", split="train").join(train, on="__key__")
    assert (chosen["keep"] == ~(chosen["redundant"] | chosen["leaks"])).all()
    assert last_json(result.stdout)["dropped"] == int((train["redundant"] | train["leaks"]).sum())
    out = root / "reports" / "audit"
    audited = wv_cli("audit", root, "--workers", "1", "--json")
    assert audited.exit_code == 0, audited.output
    page = (out / "duplicates.html").read_text()
    group = train.filter(pl.col("near_group").is_not_null())["near_group"][0]
    leak = train.filter(pl.col("leaks"))
    assert group in page and leak["__key__"][0] in page and leak["other_key"][0] in page
    assert 'href="duplicates.html"' in (out / "index.html").read_text()
    assert last_json(audited.stdout)["paths"]["duplicates"].endswith("duplicates.html")
