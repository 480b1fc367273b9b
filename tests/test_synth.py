import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from wv.shards.layout import query_id, read_file_list, read_query_map, split_rel_paths
from wv.synth import SynthOptions, write_synth


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    opts = SynthOptions(classes=3, per_class=8, seed=5)
    write_synth(tmp_path / "a", opts)
    write_synth(tmp_path / "b", opts, workers=2)
    write_synth(tmp_path / "c", SynthOptions(classes=3, per_class=8, seed=6))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_webvision_1_conventions(synth_v1):
    assert (synth_v1 / "info" / "train_filelist_google.txt").read_text().startswith("google/q0")
    assert next((synth_v1 / "google").iterdir()).name.startswith("q") and len(next((synth_v1 / "google").iterdir()).name) == 5
    assert min(read_query_map(synth_v1 / "info" / "queries_synsets_map.txt").values()) == 0
    assert (synth_v1 / "info" / "queries_synsets_map.txt").read_text().startswith("1 1\n")  # 1-based in 1.0
    flickr = json.loads(next((synth_v1 / "meta" / "flickr").glob("*.json")).read_text())
    assert isinstance(flickr[0]["tags"], list) and set(flickr[0]) == {"id", "title", "description", "tags", "url"}
    google = json.loads(next((synth_v1 / "meta" / "google").glob("*.json")).read_text())
    assert {"id", "title", "description", "url", "rank"} <= set(google[0]) and isinstance(google[0]["rank"], str)
    assert (synth_v1 / "val_images_resized").is_dir()
    meta_list = (synth_v1 / "info" / "train_meta_list_google.txt").read_text().splitlines()
    train_list = (synth_v1 / "info" / "train_filelist_google.txt").read_text().splitlines()
    json_path, row = meta_list[0].split()
    record = json.loads((synth_v1 / "meta" / json_path).read_text())[int(row) - 1]
    assert record["id"] == Path(train_list[0].split()[0]).stem


def test_webvision_2_conventions(tmp_path):
    write_synth(tmp_path / "v2", SynthOptions(classes=3, per_class=10, version="2.0", flickr_share=0.5, seed=1))
    v2 = tmp_path / "v2"
    folders = list((v2 / "train_images_256" / "google_images_resized").iterdir())
    assert folders and all(len(f.name) == 6 for f in folders)  # q00001
    assert (v2 / "info" / "queries_synsets_map.txt").read_text().startswith("1 0\n")  # 0-based in 2.0
    flickr = json.loads(next((v2 / "meta" / "flickr").glob("*.json")).read_text())
    assert isinstance(flickr[0]["tags"], str)
    assert (v2 / "val_images_256").is_dir()


def test_labels_queries_and_ground_truth_agree(synth_v1):
    truth = pl.read_parquet(synth_v1 / "ground_truth.parquet")
    query_map = read_query_map(synth_v1 / "info" / "queries_synsets_map.txt")
    for source in ("google", "flickr"):
        entries = split_rel_paths(read_file_list(synth_v1 / "info" / f"train_filelist_{source}.txt")[0], "train")
        for query, label in entries.select("query", "label").iter_rows():
            assert query_map[query_id(query)] == label
    train = truth.filter(pl.col("split") == "train")
    assert 0.2 < train["is_noisy"].mean() < 0.4  # --noise 0.3
    flips = train.filter(pl.col("noise") == "flip")
    assert (flips["true_label"] != flips["label"]).all()
    assert (train.filter(pl.col("noise") == "outlier")["true_label"] == -1).all()
    sizes = train.group_by("label").len()["len"]
    assert sizes.max() / sizes.min() >= 1.5  # --imbalance 2


def test_image_only_flips_and_offtopic_text(tmp_path):
    """Image-only flips are wrong labels with on-topic text; off-topic text on a right image is not a wrong label."""
    import json

    from wv.synth import OFFTOPIC_WORDS, class_styles

    opts = SynthOptions(classes=4, per_class=40, noise=0.4, outlier_share=0.0, image_flip_share=1.0, offtopic_text=0.3, val_per_class=1, width=32, height=24, seed=4)
    write_synth(tmp_path / "s", opts)
    train = pl.read_parquet(tmp_path / "s" / "ground_truth.parquet").filter(pl.col("split") == "train")
    kinds = set(train["noise"])
    assert kinds == {"clean", "image_flip", "offtopic_text"}  # every noisy one an image-only flip
    flips, offtopic = train.filter(pl.col("noise") == "image_flip"), train.filter(pl.col("noise") == "offtopic_text")
    assert flips["is_noisy"].all() and (flips["true_label"] != flips["label"]).all()
    assert not offtopic["is_noisy"].any() and (offtopic["true_label"] == offtopic["label"]).all()
    words = {label: set(style.words) for label, style in enumerate(class_styles(opts))}
    records = {r["id"]: r for path in (tmp_path / "s" / "meta").rglob("*.json") for r in json.loads(path.read_text())}

    def share(image_id, vocabulary):
        tokens = records[image_id]["description"].split()
        return sum(t in vocabulary for t in tokens) / max(len(tokens), 1)

    flip = flips.row(0, named=True)
    assert share(flip["image_id"], words[flip["label"]]) > share(flip["image_id"], words[flip["true_label"]])  # text of its label
    text_off = offtopic.row(0, named=True)
    assert share(text_off["image_id"], set(OFFTOPIC_WORDS)) > share(text_off["image_id"], words[text_off["label"]])


def test_images_tell_classes_apart(tmp_path):
    """A nearest-class-mean on colour histograms separates the classes: a small CNN can learn them."""
    write_synth(tmp_path / "s", SynthOptions(classes=8, per_class=30, noise=0.0, val_per_class=10, seed=2))
    truth = pl.read_parquet(tmp_path / "s" / "ground_truth.parquet")

    def features(row):
        folder = "val_images_resized" if row["split"] == "val" else f"{row['source']}/{row['query']}"
        pixels = np.asarray(Image.open(tmp_path / "s" / folder / f"{row['image_id']}.jpg").convert("RGB")).reshape(-1, 3)
        histogram = np.histogramdd(pixels // 64, bins=(4, 4, 4), range=((0, 4),) * 3)[0].ravel()
        return histogram / histogram.sum()

    train = truth.filter(pl.col("split") == "train")
    val = truth.filter(pl.col("split") == "val")
    x = np.stack([features(r) for r in train.iter_rows(named=True)])
    means = np.stack([x[train["label"].to_numpy() == c].mean(0) for c in range(8)])
    xv = np.stack([features(r) for r in val.iter_rows(named=True)])
    predicted = np.argmin(((xv[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == val["label"].to_numpy()).mean() >= 0.9


def test_bad_options_and_existing_output(tmp_path, wv_cli):
    assert wv_cli("synth", tmp_path / "x", "--noise", "1.5").exit_code == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("keep me")
    result = wv_cli("synth", tmp_path / "full")
    assert result.exit_code == 2 and "is not empty" in result.stderr
    assert (tmp_path / "full" / "something").read_text() == "keep me"


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--seed", "-1"], "--seed must be between 0 and"),
        (["--seed", str(2**63)], "--seed must be between 0 and"),
        (["--image-size", "100000x100000"], "--image-size must be between 16x16 and 2048x2048"),
        (["--image-size", "4096x16"], "--image-size must be between 16x16 and 2048x2048"),
        (["--image-size", "8x8"], "--image-size must be between 16x16"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_out_of_range_options_are_one_sentence_and_write_nothing(tmp_path, wv_cli, args, phrase):
    result = wv_cli("synth", tmp_path / "out", "--classes", "2", "--per-class", "6", *args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and phrase in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_the_largest_seed_is_accepted(tmp_path):
    write_synth(tmp_path / "out", SynthOptions(classes=2, per_class=6, val_per_class=1, seed=2**63 - 1))
    assert (tmp_path / "out" / "ground_truth.parquet").is_file()


def test_python_dash_m_wv_works_like_wv():
    result = subprocess.run([sys.executable, "-m", "wv", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "shard" in result.stdout and "synth" in result.stdout
