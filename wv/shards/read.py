"""Reading shards back: any webdataset tar (wv's or another project's), or one sample by its offset."""

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


def iter_samples(urls, decode: str | None = None):
    """Samples as dicts of raw bytes (or decoded with a webdataset decoder such as 'pil')."""
    import webdataset as wds

    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    if decode:
        dataset = dataset.decode(decode)
    yield from dataset


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
    """The tar members of one sample (a byte range from the manifest) -> {ext: bytes, '__key__': key}."""
    sample = {}
    with tarfile.open(fileobj=io.BytesIO(chunk), mode="r:") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if sample.setdefault("__key__", key) != key:
                raise ValueError("the byte range spans two samples")
            sample[ext] = tar.extractfile(member).read()
    return sample
