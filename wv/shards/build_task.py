"""One shard task: read its images, check them, join their metadata, write the tar and its ledger.

Outputs, each written atomically, in this order (the last one marks the shard complete):
    shards/{shard}.tar   meta/{shard}.parquet   .build/{split}/parts/{shard}.manifest.parquet
    .build/{split}/parts/{shard}.rejects.parquet (if any)   .build/{split}/parts/{shard}.done.json
"""

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from wv.atomic import temp_name, write_json, write_parquet
from wv.shards.images import BadImage, prepare_image, read_image_file
from wv.shards.layout import sample_rows
from wv.shards.meta import META_NONE, MetaIndex, normalise
from wv.shards.root import Root
from wv.shards.tarwriter import TarShardWriter

# A fixed member time makes a shard's bytes a function of its inputs alone (byte-identical rebuilds).
MEMBER_MTIME = 1_500_000_000
TAR_BUFFER = 1 << 20  # one write call per ~30 samples, not one each: 15% less CPU in the tar's writes
MANIFEST_SCHEMA = {
    "__key__": pl.String,
    "split": pl.String,
    "shard": pl.String,
    "index": pl.Int32,
    "offset": pl.Int64,
    "length": pl.Int64,
    "label": pl.Int32,
    "source": pl.String,
    "query": pl.String,
    "image_id": pl.String,
    "path": pl.String,
    "bytes": pl.Int64,
    "width": pl.Int32,
    "height": pl.Int32,
    "format": pl.String,
    "meta": pl.String,
}
META_SCHEMA = {
    "__key__": pl.String,
    "label": pl.Int32,
    "source": pl.String,
    "query": pl.String,
    "title": pl.String,
    "description": pl.String,
    "tags": pl.List(pl.String),
    "text": pl.String,
}
REJECT_SCHEMA = {
    "split": pl.String,
    "__key__": pl.String,
    "source": pl.String,
    "query": pl.String,
    "path": pl.String,
    "label": pl.Int32,
    "reason": pl.String,
}
NORMALISED = ("title", "description", "tags", "url")


@dataclass
class ShardJob:
    root: str
    webvision_root: str
    split: str
    shard: str
    entries: pl.DataFrame  # the shard's compact plan rows (wv.shards.layout.COMPACT)
    prefixes: dict  # source -> its image folder under webvision_root
    check: str = "full"
    resize: int | None = None
    quality: int = 90
    meta_index: str | None = None

    @functools.cached_property
    def rows(self) -> list[dict]:
        """__key__, source, query, image_id, label, path per sample: made in the worker, not the driver."""
        return sample_rows(self.entries, self.prefixes)


@dataclass
class ShardOutput:
    manifest: list[dict] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def source_context(root: str, webvision_root: str):
    """Per worker process, once: the class synsets and the query texts."""
    from wv.shards.layout import open_webvision

    info = Root(root).info()
    synsets = [c["synset"] for c in info["classes"]]
    return synsets, open_webvision(webvision_root).query_texts()


def write_shard(job: ShardJob) -> dict:
    root = Root(job.root)
    records = lookup_meta(job)
    synsets, query_texts = source_context(job.root, job.webvision_root)
    out = ShardOutput()
    tar_path = root.shard_path(job.shard)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(tar_path)
    try:
        with open(tmp, "wb", buffering=TAR_BUFFER) as file:
            tar = TarShardWriter(file, mtime=MEMBER_MTIME)
            for row in job.rows:
                add_sample(job, row, records, synsets, query_texts, tar, out)
            tar.close()
        if out.manifest:  # a shard whose every image was rejected is not written at all
            os.replace(tmp, tar_path)
    finally:
        tmp.unlink(missing_ok=True)
    return record_shard(root, job, out, tar)


def lookup_meta(job: ShardJob) -> dict:
    if job.meta_index is None:
        return {}
    index = MetaIndex(Path(job.meta_index), readonly=True)
    try:
        return index.lookup([(r["__key__"], r["source"], r["query"]) for r in job.rows])
    finally:
        index.close()


def add_sample(job, row, records, synsets, query_texts, tar, out: ShardOutput) -> None:
    try:
        image = prepare_image(read_image_file(image_file(job.webvision_root, row["path"])), job.check, job.resize, job.quality)
    except BadImage as error:
        out.rejects.append(reject_row(job.split, row, str(error)))
        return
    record, status = records.get(row["__key__"], (None, META_NONE))
    text = normalise(record, status)
    details = sample_json(job, row, record, text, synsets, query_texts)
    members = {  # sorted by extension, as webdataset's own writer orders them
        "cls": str(row["label"]).encode(),
        "jpg": image.data,
        "json": json.dumps(details, ensure_ascii=False).encode(),
        "txt": text["text"].encode(),
    }
    offset, length = tar.write_sample(row["__key__"], members)
    out.manifest.append(
        {
            "__key__": row["__key__"],
            "split": job.split,
            "shard": job.shard,
            "index": len(out.manifest),
            "offset": offset,
            "length": length,
            "label": row["label"],
            "source": row["source"],
            "query": row["query"],
            "image_id": row["image_id"],
            "path": row["path"],
            "bytes": len(image.data),
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "meta": text["meta"],
        }
    )
    out.meta.append(
        {
            "__key__": row["__key__"],
            "label": row["label"],
            "source": row["source"],
            "query": row["query"],
            **{k: text[k] for k in ("title", "description", "tags", "text")},
        }
    )


def image_file(webvision_root: str, path: str) -> str:
    """The file of an image path relative to the WebVision root; never one outside it."""
    if os.path.isabs(path) or ".." in path.split("/"):
        raise BadImage("path leaves the WebVision root")
    return os.path.join(webvision_root, path)


def sample_json(job, row, record, text, synsets, query_texts) -> dict:
    details = {
        "key": row["__key__"],
        "split": job.split,
        "label": row["label"],
        "synset": synsets[row["label"]],
        "source": row["source"],
        "query": row["query"],
        "query_text": query_texts.get(row["source"], {}).get(row["query"], ""),
        "image_id": row["image_id"],
        "path": row["path"],
        "meta": text["meta"],
        **{k: text[k] for k in NORMALISED},
    }
    for name, value in (record or {}).items():  # keep the raw record's other fields (rank, site ...)
        if name != "id" and name not in details:
            details[name] = value
    return details


def reject_row(split: str, row: dict, reason: str) -> dict:
    return {"split": split, "__key__": row["__key__"], "source": row["source"], "query": row["query"], "path": row["path"], "label": row["label"], "reason": reason}


def record_shard(root: Root, job: ShardJob, out: ShardOutput, tar: TarShardWriter) -> dict:
    parts = root.build_dir(job.split) / "parts"
    written = len(out.manifest)
    if written:
        write_parquet(root.meta_path(job.shard), pl.DataFrame(out.meta, schema=META_SCHEMA))
    write_parquet(parts / f"{job.shard}.manifest.parquet", pl.DataFrame(out.manifest, schema=MANIFEST_SCHEMA))
    if out.rejects:
        write_parquet(parts / f"{job.shard}.rejects.parquet", pl.DataFrame(out.rejects, schema=REJECT_SCHEMA))
    done = {
        "name": job.shard,
        "split": job.split,
        "samples": written,
        "rejected": len(out.rejects),
        "bytes": tar.offset if written else 0,
        "sha256": tar.sha256.hexdigest() if written else "",
    }
    write_json(parts / f"{job.shard}.done.json", done)
    return done
