"""Conformance with real WebVision files (tests/data, see its README for origins)."""

import io
import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from wv.shards.build import BuildOptions, build
from wv.shards.layout import (
    open_webvision, query_id, read_file_list, read_query_map, read_synsets, resolve_image_dirs, list_entries,
    split_rel_paths,
)
from wv.shards.root import Root

DATA = Path(__file__).parents[1] / "data"
SYNSETS = Path(__file__).parents[2] / "wv" / "data" / "webvision1_synsets.txt"


def tiny_jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 16), ((seed * 37) % 256, (seed * 91) % 256, 128)).save(out, format="JPEG")
    return out.getvalue()


def test_real_synsets_line_number_is_label():
    classes = read_synsets(SYNSETS)
    assert len(classes) == 1000
    assert (classes[0].synset, classes[0].names) == ("n01440764", "tench, Tinca tinca")
    assert classes[999].label == 999


def test_real_query_map_is_one_based_and_maps_the_real_train_list():
    query_map = read_query_map(DATA / "queries_synsets_map.txt")
    assert len(query_map) == 1631 and 587 not in query_map
    assert query_map[1] == 0 and max(query_map.values()) == 999
    entries, bad = read_file_list(DATA / "train_filelist_cls0-9_excerpt.txt")
    assert bad.height == 0 and entries.height == 644
    entries = split_rel_paths(entries, "train")
    assert set(entries["source"]) == {"google", "flickr"}
    for folder, label in entries.select("query", "label").iter_rows():
        assert query_map[query_id(folder)] == label, folder


def test_zero_based_query_map_of_webvision_2(tmp_path):
    path = tmp_path / "map.txt"
    path.write_text("1 0\n2 0\n3 4999\n")
    assert read_query_map(path) == {1: 0, 2: 0, 3: 4999}


def test_unparseable_list_lines_are_reported(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("google/q0001/a b.jpg 3\nno label here\n\nflickr/q0002/123.jpg 7\n")
    good, bad = read_file_list(path)
    assert good["rel_path"].to_list() == ["google/q0001/a b.jpg", "flickr/q0002/123.jpg"]
    assert good["label"].to_list() == [3, 7]
    assert bad["text"].to_list() == ["no label here"]


def make_real_v1_root(root: Path) -> pl.DataFrame:
    """The real 1.0 info files, the real train-list lines, tiny images at the real paths."""
    info = root / "info"
    info.mkdir(parents=True)
    (info / "synsets.txt").write_bytes(SYNSETS.read_bytes())
    (info / "queries_synsets_map.txt").write_bytes((DATA / "queries_synsets_map.txt").read_bytes())
    entries = split_rel_paths(read_file_list(DATA / "train_filelist_cls0-9_excerpt.txt")[0], "train")
    for source in ("google", "flickr"):
        rows = entries.filter(pl.col("source") == source)
        (info / f"train_filelist_{source}.txt").write_text("".join(f"{p} {l}\n" for p, l in rows.select("rel_path", "label").iter_rows()))
        for n, (rel, image_id, query) in enumerate(rows.select("rel_path", "image_id", "query").iter_rows()):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(tiny_jpeg(n))
        for query, ids in rows.group_by("query").agg("image_id").iter_rows():
            meta = root / "meta" / source / f"{query}.json"
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps([{"id": i, "title": f"title {i}", "description": "d"} for i in ids]))
    return entries


def test_build_from_real_v1_lines_keeps_their_labels_and_queries(tmp_path):
    entries = make_real_v1_root(tmp_path / "webvision")
    source = open_webvision(tmp_path / "webvision")
    assert source.version == "1.0" and len(source.classes) == 1000
    report = build(tmp_path / "webvision", tmp_path / "root", BuildOptions(shard_size=100), progress=False)
    assert report.written == entries.height and report.rejected == 0
    manifest = Root(tmp_path / "root").manifest().collect()
    expected = entries.select(pl.concat_str("source", pl.lit("/"), "query", pl.lit("/"), "file").alias("path"), "label")
    joined = manifest.select("path", pl.col("label").cast(pl.Int64)).join(expected, on="path", how="full", coalesce=True)
    assert joined.filter(pl.col("label") != pl.col("label_right")).height == 0
    assert joined.null_count().sum_horizontal().item() == 0
    assert (manifest["meta"] == "ok").all()
    info = Root(tmp_path / "root").info()
    assert info["classes"][9]["synset"] == "n01518878" and info["source"]["webvision_version"] == "1.0"


def make_real_v2_root(root: Path) -> tuple[list, list]:
    """The real 2.0 image paths (train_images_256/google_images_resized/q00932/..., val_images_256/...)."""
    paths = [line.split("webvision2.0/", 1)[1] for line in (DATA / "v2_paths_sample.txt").read_text().split()]
    info = root / "info"
    info.mkdir(parents=True)
    (info / "synsets.txt").write_text("".join(f"n{i:08d} class {i}\n" for i in range(5000)))
    (info / "queries_synsets_map.txt").write_text("".join(f"{q} {(q - 1) % 5000}\n" for q in range(1, 10001)))
    train, val = [], []
    for n, rel in enumerate(paths):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(tiny_jpeg(n))
        parts = rel.split("/")
        if parts[0].startswith("train"):
            query = parts[-2]
            train.append(f"google/{query}/{parts[-1]} {(int(query[1:]) - 1) % 5000}")
        else:
            val.append(f"{parts[-1]} {n % 5000}")
    (info / "train_filelist_google.txt").write_text("\n".join(train) + "\n")
    (info / "val_filelist.txt").write_text("\n".join(val) + "\n")
    return train, val


def test_real_v2_paths_resolve_and_build(tmp_path):
    train, val = make_real_v2_root(tmp_path / "wv2")
    source = open_webvision(tmp_path / "wv2")
    assert source.version == "2.0"
    entries, _ = list_entries(source, "train", ["google"])
    assert resolve_image_dirs(source, entries, "train") == {"google": "train_images_256/google_images_resized"}
    val_entries, _ = list_entries(source, "val", [])
    assert resolve_image_dirs(source, val_entries, "val") == {"val": "val_images_256"}
    for split, lines in (("train", train), ("val", val)):
        report = build(tmp_path / "wv2", tmp_path / "root", BuildOptions(split=split, shard_size=64), progress=False)
        assert (report.written, report.rejected) == (len(lines), 0)
    manifest = Root(tmp_path / "root").manifest().collect()
    assert manifest.filter(pl.col("split") == "train")["path"].str.starts_with("train_images_256/google_images_resized/q").all()
    assert manifest.filter(pl.col("split") == "val")["path"].str.starts_with("val_images_256/val").all()
    assert "google-q00932-Uzl5qujl31AcJM" in manifest["__key__"].to_list()
