"""Reading shards back: any webdataset tar (wv's or another project's), or one sample by its offset.

Two readers, one key rule (webdataset's `base_plus_ext`: the key is the member name up to the first dot
of its file name, the extension the rest, lower-cased):
    shard_samples(url)    every sample of one shard, in order, by webdataset's tar stages; every
                          whole-shard read in wv goes through it (embed, confidence, bake, eval, the
                          stream over plain shards)
    read_range(path, ...) one sample from its manifest byte range (read_sample, verify, audit)
"""

import glob
import io
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from wv.errors import WvError
from wv.shards.keys import base_plus_ext
from wv.shards.root import Root

META_MEMBER = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta: an index or other meta member, not a sample


def shard_urls(source: str | Path, split: str | None = "train") -> list[str]:
    """A dataset root, a shard file, a glob or brace pattern (webdataset style) -> shard paths/URLs."""
    source = str(source)
    if Root(source).exists():
        root = Root(source)
        urls = [str(root.shard_path(name)) for name in root.shard_names(split)]
        if not urls:
            raise WvError(f"{source} has no {split} shards")
        return urls
    if "{" in source or "://" in source or source.startswith("pipe:"):
        import webdataset as wds  # imports torch: only where needed

        return list(wds.shardlists.expand_urls(source))
    matches = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
    missing = [m for m in matches if not os.path.exists(m)]
    if not matches or missing:
        raise WvError(f"no shards found at {source}; give a dataset root, a .tar file, a glob or a {{000..009}} pattern")
    return matches


def shard_samples(url: str | Path) -> Iterator[dict]:
    """The samples of one shard, in order, as {"__key__": key, "__url__": url, ext: bytes}: webdataset's
    tar stages (tar_file_iterator, group_by_keys) restated and read straight, so that neither DataLoader
    workers nor torchrun ranks split the shard (a WebDataset would). A local file is opened here (no
    webdataset, hence no torch, in the verify and bake workers); any other URL (pipe:, http, file:)
    through webdataset's gopen. The file is closed when the samples end or the caller stops early.
    tests/shards/test_keys.py checks the samples against webdataset's own stages."""
    url = str(url)
    if "://" in url or url.startswith("pipe:"):
        from webdataset.gopen import gopen  # imports torch: only for URLs

        stream = gopen(url)
    else:
        stream = open(url, "rb")
    try:
        yield from grouped(tar_members(stream), url)
    finally:
        stream.close()


def tar_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a tar stream's regular files in order, less webdataset's meta members (__x__)."""
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if member.isreg() and not META_MEMBER.match(member.name):
                yield member.name, tar.extractfile(member).read()
            tar.members = []  # a stream's TarFile keeps every member it has seen otherwise


def grouped(named_members: Iterable[tuple[str, bytes]], url: str | None) -> Iterator[dict]:
    """Consecutive members with one key (keys.base_plus_ext) -> one sample {"__key__", "__url__", ext: bytes},
    the extensions lower-cased; a member name without a key is passed over, an extension seen twice
    within a sample is a ValueError (webdataset's group_by_keys)."""
    sample = None
    for name, data in named_members:
        key, ext = base_plus_ext(name)
        if key is None:
            continue
        if sample is None or sample["__key__"] != key:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__url__": url}
        if ext.lower() in sample:
            raise ValueError(f"{name}: duplicate file name in tar file")
        sample[ext.lower()] = data
    if sample is not None:
        yield sample


def members(sample: dict) -> dict:
    """A sample's tar members {ext: bytes}, without the "__key__" / "__url__" entries."""
    return {ext: data for ext, data in sample.items() if not ext.startswith("__")}


def iter_samples(urls: Iterable[str], decode: str | None = None) -> Iterator[dict]:
    """The samples of several shards, in order, as dicts of raw bytes (or decoded with a webdataset
    image decoder such as 'pil')."""
    decoder = None
    if decode:
        from webdataset.autodecode import Decoder, ImageHandler

        decoder = Decoder([ImageHandler(decode)])
    for url in urls:
        for sample in shard_samples(url):
            yield decoder(sample) if decoder else sample


def read_sample(root, key: str) -> dict:
    """One sample by key: the manifest gives its byte range, so only that range is read."""
    root = Root(root)
    rows = root.manifest().filter(pl.col("__key__") == key).select("shard", "offset", "length").collect()
    if rows.height == 0:
        raise WvError(f"no sample with key {key!r} in {root.path}")
    shard, offset, length = rows.row(0)
    return read_range(root.shard_path(shard), offset, length)


def read_range(path: Path, offset: int, length: int) -> dict:
    with open(path, "rb") as f:
        f.seek(offset)
        return read_sample_bytes(f.read(length))


def read_sample_bytes(chunk: bytes) -> dict:
    """The tar members of one sample (a byte range from the manifest) -> {ext: bytes, '__key__': key},
    keys and extensions as shard_samples has them."""
    samples = list(grouped(tar_members(io.BytesIO(chunk)), None))
    if len(samples) > 1:
        raise ValueError("the byte range spans two samples")
    return {name: value for name, value in samples[0].items() if name != "__url__"} if samples else {}
