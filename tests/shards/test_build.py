import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import polars as pl
import pytest
import webdataset as wds
from PIL import Image

from wv.errors import WvError
from wv.shards.build import BuildOptions, build
from wv.shards.read import read_range, shard_urls
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth


def test_outputs_agree_with_each_other(built_root):
    root = Root(built_root)
    info = root.info()
    assert info["splits"]["train"]["complete"] and info["splits"]["val"]["complete"]
    shards = root.shards()
    manifest = root.manifest().collect()
    assert shards["samples"].sum() == manifest.height
    assert info["splits"]["train"]["samples"] == manifest.filter(pl.col("split") == "train").height
    assert manifest["__key__"].is_unique().all()
    assert not manifest["__key__"].str.contains(r"\.").any()
    for row in shards.iter_rows(named=True):
        assert root.shard_path(row["name"]).stat().st_size == row["bytes"]
        assert root.meta_path(row["name"]).is_file()


def test_planted_defects_become_rejects_or_flags(built_root, synth_v1):
    defects = json.loads((synth_v1 / "defects.json").read_text())
    rejects = Root(built_root).rejects()
    reason_of = dict(zip(rejects["__key__"], rejects["reason"]))
    for reason in ("missing file", "empty file", "truncated image", "not an image"):
        assert reason_of[defects[reason]].startswith(reason.split(" (")[0]), reason
    assert rejects.filter(pl.col("reason") == "unparseable list line").height == 1
    manifest = Root(built_root).manifest().collect()
    meta_of = dict(zip(manifest["__key__"], manifest["meta"]))
    assert meta_of[defects["missing meta record"]] == "missing meta record"
    source, query = defects["malformed meta file"].split("/")
    bad = manifest.filter((pl.col("source") == source) & (pl.col("query") == query))
    assert bad.height > 0 and (bad["meta"] == "malformed meta file").all()
    assert (manifest.filter(pl.col("split") == "val")["meta"] == "none").all()


def test_manifest_byte_range_reads_exactly_one_sample(built_root):
    root = Root(built_root)
    manifest = root.manifest().collect()
    for row in manifest.sample(12, seed=1).iter_rows(named=True):
        sample = read_range(root.shard_path(row["shard"]), row["offset"], row["length"])
        assert sample["__key__"] == row["__key__"]
        assert int(sample["cls"]) == row["label"]
        assert Image.open(io.BytesIO(sample["jpg"])).size == (row["width"], row["height"])
        assert json.loads(sample["json"])["path"] == row["path"]


def test_plain_webdataset_reads_every_sample(built_root):
    root = Root(built_root)
    urls = [str(root.shard_path(s)) for s in root.shard_names()]
    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        assert sample["jpg"].mode == "RGB"
        assert sample["json"]["label"] == int(sample["cls"])
        seen.append(sample["__key__"])
    assert seen == root.manifest().sort("shard", "index").collect()["__key__"].to_list()


def test_shards_mix_classes_and_meta_sidecars_follow_shard_order(built_root):
    root = Root(built_root)
    manifest = root.manifest("train").collect()
    for shard, group in manifest.group_by("shard"):
        assert group["label"].n_unique() >= 4, shard
    shard = root.shard_names("train")[0]
    meta = pl.read_parquet(root.meta_path(shard))
    in_tar = list(wds.WebDataset(str(root.shard_path(shard)), shardshuffle=False))
    assert meta["__key__"].to_list() == [s["__key__"] for s in in_tar]
    assert meta["text"].to_list() == [s["txt"].decode() for s in in_tar]


def test_rebuild_is_byte_identical_and_worker_count_does_not_matter(built_root, synth_v1, tmp_path):
    build(synth_v1, tmp_path / "again", BuildOptions(split="train", shard_size=40), workers=2, progress=False)
    before = Root(built_root).shards("train").select("name", "sha256")
    assert Root(tmp_path / "again").shards("train").select("name", "sha256").equals(before)


def test_resize_and_cheap_check(synth_v1, tmp_path):
    report = build(synth_v1, tmp_path / "root", BuildOptions(shard_size=100, resize=48, check="cheap"), progress=False)
    manifest = Root(tmp_path / "root").manifest().collect()
    assert (manifest.select(pl.min_horizontal("width", "height"))["width"] == 48).all()
    reasons = set(Root(tmp_path / "root").rejects()["reason"])
    assert {"missing file", "empty file", "not an image", "unparseable list line"} <= reasons
    assert any(r.startswith("truncated image") for r in reasons)
    assert report.written == manifest.height


def write_list_root(base: Path, images: dict) -> Path:
    """A one-class WebVision root whose google/q0001 images are the given bytes."""
    (base / "info").mkdir(parents=True)
    (base / "info" / "synsets.txt").write_text("n00000001 thing\n")
    (base / "info" / "train_filelist_google.txt").write_text("".join(f"google/q0001/{n}.jpg 0\n" for n in images))
    (base / "google" / "q0001").mkdir(parents=True)
    for name, data in images.items():
        (base / "google" / "q0001" / f"{name}.jpg").write_bytes(data)
    return base


def encoded(fmt: str, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (40, 30), "red").save(out, format=fmt)
    return out.getvalue()


def test_damaged_huffman_table_full_check_rejects_cheap_check_keeps(tmp_path):
    good = encoded("JPEG")
    at = good.index(b"\xff\xc4")
    damaged = good[: at + 5] + b"\xff" * 30 + good[at + 35 :]
    source = write_list_root(tmp_path / "wv", {"good": good, "damaged": damaged, "png": encoded("PNG", "RGBA")})
    full = build(source, tmp_path / "full", BuildOptions(check="full"), progress=False)
    cheap = build(source, tmp_path / "cheap", BuildOptions(check="cheap"), progress=False)
    assert (full.written, cheap.written) == (2, 3)
    assert Root(tmp_path / "full").rejects()["reason"].item().startswith("corrupt image")
    manifest = Root(tmp_path / "full").manifest().collect()
    png = manifest.filter(pl.col("image_id") == "png")
    assert png["format"].item() == "PNG"
    stored = read_range(Root(tmp_path / "full").shard_path(png["shard"].item()), png["offset"].item(), png["length"].item())
    assert Image.open(io.BytesIO(stored["jpg"])).format == "JPEG"


def test_every_image_rejected_writes_no_shard(tmp_path):
    source = write_list_root(tmp_path / "wv", {"a": b"", "b": b"not an image"})
    report = build(source, tmp_path / "root", BuildOptions(), progress=False)
    assert (report.written, report.rejected, report.shards) == (0, 2, 0)
    assert not list((tmp_path / "root" / "shards").glob("*.tar"))


def test_changed_options_are_refused_and_nothing_changes(root_copy, synth_v1, wv_cli):
    before = Root(root_copy).shards().clone()
    result = wv_cli("shard", "build", synth_v1, root_copy, "--shard-size", "10", "--workers", "1")
    assert result.exit_code == 2
    assert "other options (shard_size)" in result.stderr and "Traceback" not in result.stderr
    assert Root(root_copy).shards().equals(before)


def test_rerun_with_same_options_skips_everything(root_copy, synth_v1, wv_cli, last_json):
    result = wv_cli("shard", "build", synth_v1, root_copy, "--shard-size", "40", "--workers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    figures = last_json(result.stdout)
    assert figures["shards_built"] == 0 and figures["shards_skipped"] == figures["shards"]


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["shard", "build", "/nonexistent/webvision", "ROOT"], "is not a folder"),
        (["shard", "build", "SYNTH", "ROOT", "--sources", "bing"], "unknown source 'bing'"),
        (["shard", "build", "SYNTH", "ROOT", "--shard-size", "0"], "--shard-size must be at least 1"),
        (["shard", "build", "ROOT", "ROOT2"], "has no info/ folder"),
        (["shard", "verify", "SYNTH"], "is not a wv dataset root"),
        (["shard", "info", "/nonexistent"], "is not a wv dataset root"),
    ],
)
def test_bad_input_gives_one_sentence_and_exit_2(args, phrase, wv_cli, synth_v1, tmp_path):
    (tmp_path / "ROOT").mkdir()
    args = [a.replace("SYNTH", str(synth_v1)).replace("ROOT", str(tmp_path / "ROOT")) if a.isupper() or a in ("ROOT2",) else a for a in args]
    result = wv_cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and phrase in lines[0], result.stderr


def test_missing_source_folder_is_one_sentence(synth_v1, tmp_path, wv_cli):
    source = Path(shutil.copytree(synth_v1, tmp_path / "wv"))
    shutil.rmtree(source / "flickr")
    result = wv_cli("shard", "build", source, tmp_path / "root", "--workers", "1")
    assert result.exit_code == 2 and "no flickr images" in result.stderr and "--sources" in result.stderr
    assert wv_cli("shard", "build", source, tmp_path / "root", "--sources", "google", "--workers", "1").exit_code == 0


def test_a_second_build_into_the_same_root_is_refused(synth_v1, tmp_path):
    lock = tmp_path / "root" / ".build" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(WvError, match="another wv command is writing to"):
            build(synth_v1, tmp_path / "root", BuildOptions(), progress=False)


def test_killed_build_resumes_without_redoing_complete_shards(tmp_path):
    source = tmp_path / "wv"
    write_synth(source, SynthOptions(classes=8, per_class=150, val_per_class=0, seed=3), workers=2)
    root = tmp_path / "root"
    command = [sys.executable, "-m", "wv", "shard", "build", str(source), str(root), "--shard-size", "10", "--workers", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = root / ".build" / "train" / "parts"
    deadline = time.time() + 60
    while len(list(parts.glob("*.done.json"))) < 5 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_first = {p.name.split(".")[0] for p in parts.glob("*.done.json")}
    assert 5 <= len(done_first) < 120, "the build should be killed midway"
    assert not (root / "manifest.parquet").exists()
    visible = {p.stem: p.stat() for p in (root / "shards").glob("*.tar")}
    for name in visible:  # every visible shard is whole: renamed into place only once complete
        with tarfile.open(root / "shards" / f"{name}.tar") as tar:
            assert len(tar.getmembers()) % 4 == 0
    rerun = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    figures = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert figures["shards_skipped"] >= len(done_first) and figures["written"] == 1200
    for name in done_first:
        after = (root / "shards" / f"{name}.tar").stat()
        assert (after.st_ino, after.st_mtime_ns) == (visible[name].st_ino, visible[name].st_mtime_ns)
    build(source, tmp_path / "fresh", BuildOptions(shard_size=10), workers=1, progress=False)
    assert Root(root).shards().select("name", "sha256").equals(Root(tmp_path / "fresh").shards().select("name", "sha256"))


def test_shard_urls_accepts_roots_files_globs_and_braces(built_root, tmp_path):
    root = Root(built_root)
    names = root.shard_names("train")
    assert shard_urls(built_root) == [str(root.shard_path(n)) for n in names]
    assert len(shard_urls(f"{built_root}/shards/train-*.tar")) == len(names)
    assert len(shard_urls(f"{built_root}/shards/train-{{000000..000001}}.tar")) == 2
    with pytest.raises(WvError, match="no shards found"):
        shard_urls(tmp_path / "nothing.tar")
