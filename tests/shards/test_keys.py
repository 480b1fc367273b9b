"""wv reads tar members by webdataset's rules without importing webdataset (which imports torch): the key
rule (keys.base_plus_ext) and the tar stages (read.shard_samples) give what webdataset's own give, and
the verify, bake and audit workers read shards without torch."""

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
from webdataset.tariterators import base_plus_ext as webdataset_base_plus_ext
from webdataset.tariterators import group_by_keys, tar_file_expander

from wv.shards.keys import base_plus_ext
from wv.shards.read import read_sample_bytes, shard_samples

TRICKY_NAMES = [
    "key.jpg",
    "key.JPG",
    "key.cls",
    "a.b.c",
    "google-q-1.seg.png",
    "noext",
    "",
    ".",
    "..",
    ".hidden",
    "dir/.hidden",
    "dir.v2/key.jpg",
    "a.b/c.d.jpg",
    "x/y.z/w",
    "dir/sub/key.json",
    "./key.jpg",
    "../key.txt",
    "/abs/key.jpg",
    "key.",
    "key..jpg",
    "dir/",
    "dir.with.dots/",
    "k~2e~2f.jpg",
    "spaced name.jpg",
    "ünï.cödé",
    "a/b",
    "__key__.cls",
    "__index__",
    "-.-",
    "key.tar.gz",
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_the_key_rule_is_webdatasets(name):
    assert base_plus_ext(name) == webdataset_base_plus_ext(name)


def tar_of(members) -> bytes:
    """A tar with (name, bytes) regular files; a name ending in / is a directory member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TRICKY_TAR = [
    ("__index__", b"meta"),
    ("d.v1/", b""),
    ("d.v1/a.jpg", b"1"),
    ("d.v1/a.CLS", b"2"),
    ("d.v1/a.seg.png", b"3"),
    ("noext", b"4"),
    (".hidden", b"5"),
    ("b.jpg", b"6"),
    ("b.json", b"7"),
    ("__meta__/x.txt", b"8"),
    ("c.txt", b"9"),
]


def test_shard_samples_are_webdatasets_samples(tmp_path):
    path = tmp_path / "tricky.tar"
    path.write_bytes(tar_of(TRICKY_TAR))
    with open(path, "rb") as stream:
        theirs = list(group_by_keys(tar_file_expander([{"url": str(path), "stream": stream}])))
    ours = list(shard_samples(path))
    assert ours == theirs
    assert [s["__key__"] for s in ours] == ["d.v1/a", "b", "c"]


def test_a_repeated_extension_is_refused_as_webdataset_refuses_it(tmp_path):
    path = tmp_path / "twice.tar"
    path.write_bytes(tar_of([("a.jpg", b"1"), ("a.JPG", b"2")]))
    with pytest.raises(ValueError, match="duplicate"):
        list(shard_samples(path))


def test_one_sample_from_bytes():
    assert read_sample_bytes(tar_of([("k.jpg", b"1"), ("k.CLS", b"2")])) == {"__key__": "k", "jpg": b"1", "cls": b"2"}
    with pytest.raises(ValueError, match="two samples"):
        read_sample_bytes(tar_of([("k.jpg", b"1"), ("l.jpg", b"2")]))


def test_verify_bake_and_audit_workers_do_not_import_torch(built_root, tmp_path):
    """Their task functions run here in one fresh process (workers=1: in-process), as a pool worker would."""
    code = f"""
import json, sys
from pathlib import Path
from wv.shards.verify import verify
from wv.shards.bake import bake
from wv.curate.audit import write_thumb
from wv.shards.root import Root
verify({str(built_root)!r}, workers=1, progress=False)
bake({str(built_root)!r}, {str(tmp_path / "baked")!r}, split="val", workers=1, progress=False)
root = Root({str(built_root)!r})
row = root.manifest("val").head(1).collect().row(0, named=True)
write_thumb(root.shard_path(row["shard"]), Path({str(tmp_path / "audit")!r}), row["__key__"], row["label"],
            row["offset"], row["length"], 64)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "webdataset"}})))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == []


def test_a_cheap_check_does_not_import_numpy():
    """The build's workers import numpy (through simplejpeg) only for a full check's decode."""
    code = """
import io, json, sys
from PIL import Image
import wv.shards.build_task
from wv.shards.images import prepare_image
data = io.BytesIO()
Image.new("RGB", (40, 30), "red").save(data, "JPEG")
prepare_image(data.getvalue(), "cheap")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "torch", "webdataset"})))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == []
