"""Conformance with real WebVision files (tests/data, see its README for origins)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from wv.shards import layout
from wv.shards.build import BuildOptions, build
from wv.shards.layout import (
    entry_rows,
    list_entries,
    open_webvision,
    query_id,
    read_file_list,
    read_query_map,
    read_synsets,
    resolve_image_dirs,
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
        (info / f"train_filelist_{source}.txt").write_text("".join(f"{p} {label}\n" for p, label in rows.select("rel_path", "label").iter_rows()))
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


def write_lists(root: Path, lists: dict[str, str], classes: int = 10) -> None:
    info = root / "info"
    info.mkdir(parents=True)
    (info / "synsets.txt").write_text("".join(f"n{i:08d} class {i}\n" for i in range(classes)))
    for source, text in lists.items():
        (info / f"train_filelist_{source}.txt").write_text(text)


LIST_WITH_DEFECTS = (
    "google/q0001/a.jpg 0\n"
    "\n"
    "google/q0001/b.jpg 1\r\n"
    "not a line\n"
    "google/q0002/a.jpg 12\n"  # label outside 0..9
    "q0002/c.jpg 2\n"  # no source folder
    "google/q0002/ 3\n"  # no file name
    "google/q0001/a.jpg 4\n"  # the same key as line 1
    "google/q0003/x.y.png 5\n"
    "google/q0001/b.jpg 6"  # the same key as line 3, and no newline at the end
)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 40, 1 << 20])
def test_list_entries_parsed_in_chunks_give_the_same_entries_and_rejects(tmp_path, chunk_bytes):
    write_lists(tmp_path, {"google": LIST_WITH_DEFECTS, "flickr": "flickr/q0001/9.jpg 9\ngoogle/q0003/x.y.png 1\n"})
    entries, rejects = list_entries(open_webvision(tmp_path), "train", ["google", "flickr"], chunk_bytes=chunk_bytes)
    rows = entry_rows(entries)
    assert rows["__key__"].to_list() == ["google-q0001-a", "google-q0001-b", "google-q0003-x~2ey", "flickr-q0001-9"]
    assert rows["file"].to_list() == ["a.jpg", "b.jpg", "x.y.png", "9.jpg"]
    assert rows["label"].to_list() == [0, 1, 5, 9]
    found = {(r["list"], r["line"]): (r["rel_path"], r["reason"]) for r in rejects.iter_rows(named=True)}
    assert found == {
        ("train_filelist_google.txt", 4): ("not a line", "unparseable list line"),
        ("train_filelist_google.txt", 5): ("google/q0002/a.jpg", "label outside 0..9"),
        ("train_filelist_google.txt", 6): ("q0002/c.jpg", "list path has no source/query folders"),
        ("train_filelist_google.txt", 7): ("google/q0002/", "list path has no file name"),
        ("train_filelist_google.txt", 8): ("google/q0001/a.jpg", "duplicate entry"),
        ("train_filelist_google.txt", 10): ("google/q0001/b.jpg", "duplicate entry"),
        ("train_filelist_flickr.txt", 2): ("google/q0003/x.y.png", "duplicate entry"),
    }


def test_equal_key_hashes_are_compared_in_full(tmp_path, monkeypatch):
    """Hash collisions only make candidates: with every hash equal, only the real duplicates are dropped."""
    write_lists(tmp_path, {"google": LIST_WITH_DEFECTS})
    expected = list_entries(open_webvision(tmp_path), "train", ["google"], chunk_bytes=40)
    monkeypatch.setattr(layout, "key_hashes", lambda rows: np.zeros(rows.height, dtype=np.uint64))
    entries, rejects = list_entries(open_webvision(tmp_path), "train", ["google"], chunk_bytes=40)
    assert entry_rows(entries).equals(entry_rows(expected[0]))
    assert rejects.sort("line").equals(expected[1].sort("line"))
    assert rejects.filter(pl.col("reason") == "duplicate entry")["line"].to_list() == [8, 10]


def test_chunked_file_list_reads_blank_lines_and_unterminated_last_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a/b/c.jpg 1\n\n  \nbad\na/b/\xff.jpg 3\na/b/d.jpg 2")
    for chunk_bytes in (1, 5, 100):
        good, bad = read_file_list(path, chunk_bytes)
        assert good.select("line", "rel_path", "label").rows() == [(1, "a/b/c.jpg", 1), (5, "a/b/\ufffd.jpg", 3), (6, "a/b/d.jpg", 2)]
        assert bad.rows() == [(4, "bad")]
    (tmp_path / "empty.txt").write_bytes(b"")
    good, bad = read_file_list(tmp_path / "empty.txt")
    assert good.height == 0 and bad.height == 0


def test_a_root_without_train_lists_is_refused_in_one_sentence(tmp_path):
    write_lists(tmp_path / "wv", {})
    result = subprocess.run([sys.executable, "-m", "wv", "shard", "build", tmp_path / "wv", tmp_path / "root"], capture_output=True, text=True)
    assert result.returncode == 2
    info = tmp_path / "wv" / "info"
    assert result.stderr.strip().splitlines() == [f"Error: {info} has no train file list (train_filelist_google.txt or train_filelist_flickr.txt)"]
