"""Reading shards back: any webdataset tar (wv's or another project's), or one sample by its offset.

Two readers, one key rule (webdataset's `base_plus_ext`: the key is the member name up to the first dot
of its file name, the extension the rest, lower-cased):
    shard_samples(url)    every sample of one shard, in order, through webdataset's tar stages; every
                          whole-shard read in wv goes through it (embed, confidence, bake, eval, the
                          stream over plain shards)
    read_range(path, ...) one sample from its manifest byte range (read_sample, verify, audit)
"""

import glob
import io
import os
import tarfile
from pathlib import Path

import polars as pl

from wv.errors import WvError
from wv.shards.root import Root


def shard_urls(source, split: str | None = "train") -> list[str]:
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


def shard_samples(url):
    """The samples of one shard, in order, as {"__key__": key, "__url__": url, ext: bytes}: webdataset's
    tar stages (tar_file_expander, group_by_keys) read straight, so that neither DataLoader workers nor
    torchrun ranks split the shard (a WebDataset would). Any URL webdataset's gopen opens (a path,
    pipe:, http); the file is closed when the samples end or the caller stops early."""
    from webdataset.gopen import gopen  # imports torch: only where needed
    from webdataset.tariterators import group_by_keys, tar_file_expander

    url = str(url)
    stream = gopen(url)
    try:
        yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
    finally:
        stream.close()


def members(sample: dict) -> dict:
    """A sample's tar members {ext: bytes}, without the "__key__" / "__url__" entries."""
    return {ext: data for ext, data in sample.items() if not ext.startswith("__")}


def iter_samples(urls, decode: str | None = None):
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
    keys and extensions by webdataset's rule, as shard_samples has them."""
    from webdataset.tariterators import base_plus_ext

    sample = {}
    with tarfile.open(fileobj=io.BytesIO(chunk), mode="r:") as tar:
        for member in tar:
            key, ext = base_plus_ext(member.name)
            if key is None or not member.isfile():
                continue
            if sample.setdefault("__key__", key) != key:
                raise ValueError("the byte range spans two samples")
            sample[ext.lower()] = tar.extractfile(member).read()
    return sample
