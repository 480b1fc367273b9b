"""`wv shard build` refuses what would lose or mix data, before it writes anything, and turns odd
inputs (list lines, special files, byte-order marks) into rejects or reads them correctly."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from wv.shards.build import BuildOptions, build
from wv.shards.build_task import image_file
from wv.shards.images import MAX_IMAGE_BYTES, BadImage, read_image_file, read_up_to
from wv.shards.layout import open_webvision
from wv.shards.root import Root


def jpeg(seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 20), ((seed * 53) % 256, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


def small_source(base: Path, train: int = 3, val: int = 2, train_lines=(), val_lines=()) -> Path:
    """A two-class WebVision 1.0 root: google/q0001/g{i}.jpg and val_images_256/v{i}.jpg, plus extra list lines."""
    (base / "info").mkdir(parents=True)
    (base / "info" / "synsets.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n")
    (base / "google" / "q0001").mkdir(parents=True)
    (base / "val_images_256").mkdir()
    for i in range(train):
        (base / "google" / "q0001" / f"g{i}.jpg").write_bytes(jpeg(i))
    for i in range(val):
        (base / "val_images_256" / f"v{i}.jpg").write_bytes(jpeg(100 + i))
    lines = [f"google/q0001/g{i}.jpg {i % 2}" for i in range(train)] + list(train_lines)
    (base / "info" / "train_filelist_google.txt").write_text("".join(f"{line}\n" for line in lines))
    lines = [f"v{i}.jpg {i % 2}" for i in range(val)] + list(val_lines)
    (base / "info" / "val_filelist.txt").write_text("".join(f"{line}\n" for line in lines))
    return base


def tree(folder: Path) -> dict:
    """Every path under folder with a digest of its bytes (folders and special files by kind)."""
    if not folder.exists():
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        found[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else path.lstat().st_mode
    return found


def refused(result, phrase: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and phrase in lines[0], result.stderr


# -- the source is part of the root --------------------------------------------------------------
def test_another_source_into_a_built_root_is_refused_and_nothing_changes(root_copy, synth_v1, tmp_path, wv_cli):
    other = Path(shutil.copytree(synth_v1, tmp_path / "other"))
    before = tree(root_copy)
    for split in ("train", "val"):
        result = wv_cli("shard", "build", other, root_copy, "--split", split, "--shard-size", "40", "--workers", "1")
        refused(result, f"was built from {synth_v1.resolve()}, not {other.resolve()}")
    assert tree(root_copy) == before


def test_train_and_val_from_two_sources_are_refused(tmp_path, wv_cli):
    first, second = small_source(tmp_path / "first"), small_source(tmp_path / "second")
    assert wv_cli("shard", "build", first, tmp_path / "root", "--workers", "1").exit_code == 0
    before = tree(tmp_path / "root")
    refused(wv_cli("shard", "build", second, tmp_path / "root", "--split", "val", "--workers", "1"), "was built from")
    assert tree(tmp_path / "root") == before
    link = tmp_path / "link"
    link.symlink_to(first)  # the same source by another name is the same source
    assert wv_cli("shard", "build", link, tmp_path / "root", "--split", "val", "--workers", "1").exit_code == 0


def test_a_root_that_recorded_no_source_still_resumes_and_records_it(root_copy, synth_v1, wv_cli):
    info = json.loads((root_copy / "wv.json").read_text())
    del info["source"]
    (root_copy / "wv.json").write_text(json.dumps(info))
    assert wv_cli("shard", "build", synth_v1, root_copy, "--shard-size", "40", "--workers", "1").exit_code == 0
    assert Root(root_copy).info()["source"]["root"] == str(synth_v1.resolve())


@pytest.mark.parametrize("text", ["[1, 2]", '{"classes": [], "splits": {"train": 3}}', '{"format": "wv-root/1"}'])
def test_a_wrong_shaped_wv_json_is_refused(tmp_path, wv_cli, text):
    source = small_source(tmp_path / "source")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "wv.json").write_text(text)
    refused(wv_cli("shard", "build", source, tmp_path / "root", "--workers", "1"), "is not a wv.json of a dataset root")
    assert tree(tmp_path / "root") == {"wv.json": hashlib.sha256(text.encode()).hexdigest()}


# -- nothing is written before every check has passed --------------------------------------------
@pytest.mark.parametrize(
    "where, phrase",
    [
        ("source", "is inside the WebVision download"),
        ("source/out", "is inside the WebVision download"),
        ("source/google/q0001", "is inside the WebVision download"),
        ("..", "is inside"),  # the folder that holds the source
        ("file", "is a file, not a folder"),
        ("busy", "holds files but is not a wv dataset root"),
    ],
)
def test_root_overlapping_the_source_or_not_a_root_is_refused_before_writing(tmp_path, wv_cli, where, phrase):
    base = tmp_path / "base"
    source = small_source(base / "source")
    (base / "file").write_text("a file")
    (base / "busy").mkdir()
    (base / "busy" / "notes.txt").write_text("someone's files")
    root = base if where == ".." else base / where
    before = tree(base)
    refused(wv_cli("shard", "build", source, root, "--workers", "1"), phrase)
    assert tree(base) == before


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--seed", "-1"], "--seed must be between 0 and"),
        (["--seed", str(2**63)], "--seed must be between 0 and"),
        (["--sources", "google,bing"], "unknown source 'bing'"),
        (["--quality", "0"], "--quality must be between 1 and 100"),
        (["--resize", "2"], "--resize must be at least 8"),
        (["--images-dir", "../elsewhere"], "must be a folder inside WEBVISION_ROOT"),
        (["--images-dir", "/tmp"], "must be a folder inside WEBVISION_ROOT"),
        (["--images-dir", "nowhere"], "no google images of the train list were found"),
    ],
)
def test_a_refused_run_leaves_no_root_behind(tmp_path, wv_cli, args, phrase):
    source = small_source(tmp_path / "source")
    refused(wv_cli("shard", "build", source, tmp_path / "new" / "root", *args), phrase)
    assert not (tmp_path / "new").exists()


def test_a_refused_run_leaves_an_existing_root_as_it_was(root_copy, synth_v1, wv_cli):
    before = tree(root_copy)
    for args in (["--seed", "-1"], ["--workers", "0"], ["--shard-size", "7"]):
        assert wv_cli("shard", "build", synth_v1, root_copy, "--shard-size", "40", *args).exit_code == 2
    assert tree(root_copy) == before


def test_the_largest_seed_builds(tmp_path):
    source = small_source(tmp_path / "source")
    report = build(source, tmp_path / "root", BuildOptions(seed=2**63 - 1), progress=False)
    assert report.written == 3


# -- byte-order marks ------------------------------------------------------------------------------
def test_lists_with_a_byte_order_mark_are_read_as_without(tmp_path):
    source = small_source(tmp_path / "source")
    bom = "\ufeff"
    for name in ("synsets.txt", "train_filelist_google.txt", "val_filelist.txt"):
        path = source / "info" / name
        path.write_text(bom + path.read_text(), encoding="utf-8")
    (source / "info" / "queries_synsets_map.txt").write_text(f"{bom}1 1\n2 2\n", encoding="utf-8")
    (source / "info" / "queries_google.txt").write_text(f"{bom}1 tench\n2 goldfish\n", encoding="utf-8")
    webvision = open_webvision(source)
    assert [c.synset for c in webvision.classes] == ["n01440764", "n01443537"]
    assert webvision.query_map == {1: 0, 2: 1}
    assert webvision.query_texts()["google"] == {"q0001": "tench", "q0002": "goldfish"}
    for split in ("train", "val"):
        report = build(source, tmp_path / "root", BuildOptions(split=split), progress=False)
        assert report.rejected == 0
    assert Root(tmp_path / "root").classes()[0]["synset"] == "n01440764"


# -- images: regular files only, and not too large -------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_fifo_and_device_images_become_rejects_without_hanging(tmp_path):
    source = small_source(tmp_path / "source", train_lines=["google/q0001/fifo.jpg 0", "google/q0001/zero.jpg 1"])
    os.mkfifo(source / "google" / "q0001" / "fifo.jpg")
    (source / "google" / "q0001" / "zero.jpg").symlink_to("/dev/zero")
    command = [sys.executable, "-m", "wv", "shard", "build", str(source), str(tmp_path / "root"), "--workers", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)  # before: blocked on the FIFO forever
    assert result.returncode == 0, result.stderr
    reasons = dict(Root(tmp_path / "root").rejects().select("__key__", "reason").iter_rows())
    assert reasons == {"google-q0001-fifo": "not a regular file (FIFO)", "google-q0001-zero": "not a regular file (character device)"}
    assert json.loads(result.stdout.strip().splitlines()[-1])["written"] == 3


def test_image_files_are_read_whole_only_up_to_the_cap(tmp_path, wv_cli):
    assert f"larger than {MAX_IMAGE_BYTES >> 20} MiB" in " ".join(wv_cli("shard", "build", "--help").stdout.split())
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 100)
    assert read_image_file(str(path), limit=100) == b"x" * 100
    with pytest.raises(BadImage, match="file larger than 99 bytes"):
        read_image_file(str(path), limit=99)
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(BadImage, match=r"not a regular file \(folder\)"):
        read_image_file(str(tmp_path / "folder.jpg"))
    with pytest.raises(BadImage, match="missing file"):
        read_image_file(str(tmp_path / "absent.jpg"))
    with pytest.raises(BadImage, match="unreadable file"):
        read_image_file(str(tmp_path / "nul\x00.jpg"))


def test_a_file_that_grew_since_its_stat_is_still_read_up_to_the_cap(tmp_path):
    # read_image_file reads stat size + 1 bytes first; a file that grew meanwhile is read on, never past limit + 1
    def read(length: int, size: int, limit: int) -> bytes:
        (tmp_path / "grown").write_bytes(b"x" * length)
        fd = os.open(tmp_path / "grown", os.O_RDONLY)
        try:
            return read_up_to(fd, size=size, limit=limit)
        finally:
            os.close(fd)

    assert read(50, size=10, limit=40) == b"x" * 41
    assert read(30, size=10, limit=40) == b"x" * 30
    assert read(10, size=10, limit=40) == b"x" * 10
    assert read(200_000, size=0, limit=150_000) == b"x" * 150_001  # read on in steps, past the first


# -- odd list lines are rejects, never reads outside the WebVision root --------------------------
def test_odd_list_lines_become_rejects_and_nothing_outside_the_source_is_read(tmp_path):
    (tmp_path / "secret.jpg").write_bytes(jpeg(7))  # a valid image just outside the WebVision root
    odd_train = {
        "images/q0001/abc.jpg 0": "list path is not under a google or flickr folder",
        "google/../../../etc/passwd 0": "list path is absolute or goes up (..)",
        "google/q0001/../../../secret.jpg 1": "list path is absolute or goes up (..)",
        "/etc/google/q0001/g0.jpg 0": "list path is absolute or goes up (..)",
        "google/q0001/absent.jpg 0": "missing file",
    }
    odd_val = {"../secret.jpg 0": "list path is absolute or goes up (..)", "/etc/passwd 1": "list path is absolute or goes up (..)"}
    source = small_source(tmp_path / "source", train_lines=odd_train, val_lines=odd_val)
    for split, odd in (("train", odd_train), ("val", odd_val)):
        report = build(source, tmp_path / "root", BuildOptions(split=split), progress=False)
        assert (report.written, report.rejected) == ((3, len(odd)) if split == "train" else (2, len(odd)))
    rejects = Root(tmp_path / "root").rejects()
    found = {path.split(": ", 1)[-1]: reason for path, reason in rejects.select("path", "reason").iter_rows()}
    expected = {line.rsplit(" ", 1)[0]: reason for line, reason in {**odd_train, **odd_val}.items()}
    expected["google/q0001/absent.jpg"] = "missing file"
    assert found == expected
    manifest = Root(tmp_path / "root").manifest().collect()
    assert not manifest["path"].str.contains("secret|passwd|etc").any()


def test_a_list_with_no_usable_line_is_refused(tmp_path, wv_cli):
    source = small_source(tmp_path / "source", train=0, train_lines=["google/../x.jpg 0", "images/q0001/a.jpg 0", "junk"])
    refused(wv_cli("shard", "build", source, tmp_path / "root", "--workers", "1"), "have no usable entries")
    assert not (tmp_path / "root").exists()


def test_an_image_path_that_leaves_the_source_is_never_opened(tmp_path):
    assert image_file(str(tmp_path), "google/q0001/a.jpg") == str(tmp_path / "google" / "q0001" / "a.jpg")
    for path in ("google/../../secret.jpg", "/etc/passwd", "../x.jpg"):
        with pytest.raises(BadImage, match="leaves the WebVision root"):
            image_file(str(tmp_path), path)


# -- shard info -----------------------------------------------------------------------------------
def test_info_classes_must_not_be_negative_and_zero_lists_none(built_root, wv_cli):
    refused(wv_cli("shard", "info", built_root, "--classes", "-3"), "--classes is how many classes to list")
    lines = wv_cli("shard", "info", built_root, "--classes", "0").stdout.splitlines()
    assert not [line for line in lines if line.startswith("     ")]  # no per-class lines
    assert len([line for line in wv_cli("shard", "info", built_root, "--classes", "1").stdout.splitlines() if line.startswith("     ")]) == 4
