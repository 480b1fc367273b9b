"""Reading shards written by another project (webdataset's own test shard: .png + .cls, gzipped)."""

import io
import os
import tarfile
from pathlib import Path

import polars as pl
import pytest
import webdataset as wds
from webdataset.tariterators import base_plus_ext

from wv.shards.read import iter_samples, read_sample, read_sample_bytes, shard_samples, shard_urls
from wv.shards.root import Root
from wv.stream.range_reader import split_members

THIRD_PARTY = Path(__file__).parents[1] / "data" / "webdataset_sample.tgz"


def test_third_party_shard_reads_through_wv():
    samples = list(iter_samples(shard_urls(THIRD_PARTY), decode="pil"))
    assert [s["__key__"] for s in samples] == [str(k) for k in range(10, 100)]
    assert all(s["png"].size == (28, 28) for s in samples)
    assert {int(s["cls"]) for s in samples} <= set(range(10))


def test_read_one_sample_by_key(built_root):
    key = Root(built_root).manifest("val").collect()["__key__"][3]
    sample = read_sample(built_root, key)
    assert sample["__key__"] == key and set(sample) == {"__key__", "cls", "jpg", "json", "txt"}


def test_shard_samples_reads_every_member_in_order_as_webdataset_does(built_root):
    root = Root(built_root)
    path = root.shard_path("train-000000")
    mine = list(shard_samples(path))
    theirs = list(wds.WebDataset([str(path)], shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in mine] == root.manifest("train").filter(pl.col("shard") == "train-000000").sort("index").collect()["__key__"].to_list()
    assert mine == [{k: v for k, v in s.items() if k != "__local_path__"} for s in theirs]
    with tarfile.open(path) as tar:
        assert sum(len(s) - 2 for s in mine) == len(tar.getnames())  # every member, once


def tar_bytes(names: list) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tar.addfile(info, io.BytesIO(name.encode()))
    return buffer.getvalue()


@pytest.mark.parametrize("key", ["plain", "dir.v1/key", "a/b/c", "under_score-dash"])
def test_every_reader_keys_members_by_webdatasets_rule(key, tmp_path):
    names = [f"{key}.jpg", f"{key}.JSON", f"{key}.scores.json"]
    data = tar_bytes(names)
    expected = {"__key__": key, "jpg": names[0].encode(), "json": names[1].encode(), "scores.json": names[2].encode()}
    assert base_plus_ext(names[2]) == (key, "scores.json")
    path = tmp_path / "one.tar"
    path.write_bytes(data)
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in shard_samples(path)] == [expected]
    assert read_sample_bytes(data) == expected
    assert split_members(data) == expected


def open_files(path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(Path(path).resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_shard_samples_closes_its_file_when_read_or_left_early(built_root):
    path = Root(built_root).shard_path("train-000000")
    assert sum(1 for _ in shard_samples(path)) > 1 and open_files(path) == 0
    samples = shard_samples(path)
    next(samples)
    assert open_files(path) == 1
    samples.close()
    assert open_files(path) == 0
