"""`wv shard bake ROOT OUT`: shards whose samples also carry their scores, as KEY.scores.json.

Sidecars keep scores beside the shards, so adding a score never rewrites images; a consumer that
reads only tars (plain webdataset, another cluster) wants them inside. Baking streams each shard tar
to tar, member by member: image bytes are copied, never decoded. Each sample gains

    KEY.scores.json   {"lda": {"similarity": 0.81, "top_topics": [...], ...}, "keywords": {...}}

(every sample has it; `{}` when no chosen score covers its split). OUT is a dataset root of its own:
wv.json (with `baked` and `sample_parts`), manifest.parquet with the new byte offsets,
shards.parquet with the new sizes and sha256, rejects.parquet, meta/ and the baked score sidecars,
so `wv shard verify OUT` and every other command work on it. A killed bake resumes per shard.
"""

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from wv.atomic import atomic_path, temp_name, write_json, write_parquet
from wv.errors import WvError
from wv.parallel import Workers
from wv.shards import sidecars
from wv.shards.build_task import MEMBER_MTIME
from wv.shards.lock import writing
from wv.shards.read import members, shard_samples
from wv.shards.root import Root
from wv.shards.runrecord import refuse_changed
from wv.shards.tarwriter import TarShardWriter

COMMAND = "shard bake"
SCORES_PART = "scores.json"
SOURCE_PARTS = ("cls", "jpg", "json", "txt")


@dataclass(frozen=True)
class BakeJob:
    root: str
    out: str
    shard: str
    scores: tuple  # score names baked into this shard


def bake(
    root: str | Path, out: str | Path, scores: Sequence[str] | None = None, split: str | None = None, workers: int = 1, executor: str = "local", ray_address: str | None = None, progress: bool = True
) -> dict:
    """Write OUT: ROOT's shards (of `split`, or all) with the chosen scores (default: all) embedded."""
    started = time.perf_counter()
    source, target = Root(root), Root(out)
    check_finished(source, split)
    shards = source.shards(split)
    if shards.height == 0:
        raise WvError(f"{source.path} has no {split + ' ' if split else ''}shards to bake")
    if target.path.resolve() == source.path.resolve():
        raise WvError("OUT must be a new folder, not the dataset root itself")
    per_split, left_out = choose_scores(source, shards, scores)
    options = {"from": str(source.path.resolve()), "split": split, "scores": per_split}
    check_out(source, target, options)
    with writing(target, COMMAND):
        start_out(source, target, options, sorted(set(shards["split"])))
        records, written = bake_shards(source, target, shards, per_split, workers, executor, ray_address, progress)
    return {
        "shards": shards.height,
        "samples": int(shards["samples"].sum()),
        "shards_written": written,
        "shards_skipped": shards.height - written,
        "bytes": sum(r["bytes"] for r in records.values()),
        "scores": per_split,
        "left_out": left_out,
        "seconds": round(time.perf_counter() - started, 3),
        "paths": {"root": str(target.path), "shards": str(target.shards_dir), "manifest": str(target.manifest_path)},
    }


def check_finished(source: Root, split: str | None) -> None:
    """The splits baked must be finished: a killed build leaves its split listed in wv.json, incomplete."""
    splits = source.info().get("splits", {})
    for name, summary in splits.items():
        if split in (None, name) and not (isinstance(summary, dict) and summary.get("complete")):
            raise WvError(f"the {name} split of {source.path} is unfinished (its build was interrupted); re-run the same `wv shard build` to finish it, then bake")


def bake_shards(source: Root, target: Root, shards: pl.DataFrame, per_split: dict, workers: int, executor: str, ray_address: str | None, progress: bool) -> tuple[dict, int]:
    """Bake the shards not yet done, then write OUT's tables; -> ({shard: record}, shards written now)."""
    records, written = {}, 0
    jobs = []
    for row in shards.iter_rows(named=True):
        done = completed(target, row["name"])
        if done:
            records[row["name"]] = done
        else:
            jobs.append(BakeJob(str(source.path), str(target.path), row["name"], tuple(per_split.get(row["split"], ()))))
    bar = tqdm(total=int(shards["samples"].sum()), desc="shard bake", unit="sample", initial=sum(r["samples"] for r in records.values()), **({} if progress else {"disable": True}))
    with Workers(workers, executor, ray_address) as pool:
        for record in pool.map(bake_shard, jobs):
            records[record["name"]] = record
            written += 1
            bar.update(record["samples"])
    bar.close()
    finalize(source, target, [records[name] for name in shards["name"]])
    return records, written


def choose_scores(source: Root, shards: pl.DataFrame, chosen) -> tuple[dict, dict]:
    """-> ({split: [score names baked]}, {score: why it was left out of a split}).

    A score is baked into a split only where every shard of that split has it; a score asked for by
    name that misses a shard is an error, an unnamed one is left out (and said so).
    """
    available = sidecars.score_names(source)
    names = list(dict.fromkeys(chosen)) if chosen else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise WvError(f"{source.path} has no score {unknown[0]!r}; it has: {', '.join(available) or 'none'}")
    per_split, left_out = {}, {}
    for split_name in sorted(set(shards["split"])):
        names_here = shards.filter(pl.col("split") == split_name)["name"].to_list()
        per_split[split_name] = []
        for name in names:
            missing = [s for s in names_here if not source.score_path(name, s).is_file()]
            if not missing:
                per_split[split_name].append(name)
            elif chosen:
                raise WvError(f"score {name!r} is missing for {len(missing)} {split_name} shard(s), e.g. {missing[0]}; score them first or bake without it (--scores)")
            else:
                left_out.setdefault(name, []).append(f"{split_name}: missing for {len(missing)} of {len(names_here)} shards")
    return per_split, left_out


def check_out(source: Root, target: Root, options: dict) -> None:
    """OUT must be a new or empty folder, or an unfinished bake of the same root and options (to resume)."""
    if target.exists():
        previous = target.info().get("baked")
        if not isinstance(previous, dict):
            raise WvError(f"{target.path} is a dataset root, not a bake; bake into a new folder")
        refuse_changed(f"{target.path}", {k: previous.get(k) for k in options}, options, f"it is a bake of {previous.get('from')}: bake into a new folder")
    elif target.path.exists() and (not target.path.is_dir() or any(p.name != ".build" for p in target.path.iterdir())):
        raise WvError(f"{target.path} exists and is not empty; bake into a new folder")


def start_out(source: Root, target: Root, options: dict, splits: list) -> None:
    """Create OUT's wv.json (checked by check_out), unless it is a bake being resumed."""
    if target.exists():
        return
    info = source.info()
    info["splits"] = {name: summary for name, summary in info.get("splits", {}).items() if name in splits}
    info["sample_parts"] = sorted([*SOURCE_PARTS, SCORES_PART])
    info["baked"] = {**options, "complete": False}
    write_json(target.info_path, info)


def completed(target: Root, shard: str) -> dict | None:
    try:
        record = json.loads((target.path / ".bake" / f"{shard}.done.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    tar = target.shard_path(shard)
    if not tar.is_file() or tar.stat().st_size != record["bytes"] or not (target.path / ".bake" / f"{shard}.manifest.parquet").is_file():
        return None
    return record


# -- one shard ------------------------------------------------------------------------------------
def bake_shard(job: BakeJob) -> dict:
    """Pool task: shards/{shard}.tar with scores.json members, plus meta, sidecars and the ledger."""
    source, target = Root(job.root), Root(job.out)
    manifest = source.manifest().filter(pl.col("shard") == job.shard).sort("index").collect()
    documents = score_documents(source, job.shard, job.scores, manifest["__key__"])
    out_path = target.shard_path(job.shard)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out_path)
    offsets = []
    try:
        with open(tmp, "wb") as file:
            writer = TarShardWriter(file, mtime=MEMBER_MTIME)
            for index, sample in enumerate(shard_samples(source.shard_path(job.shard))):
                key, parts = sample["__key__"], members(sample)
                if index >= manifest.height or key != manifest["__key__"][index]:
                    raise WvError(f"{job.shard}: sample {index} of the tar is {key!r}, the manifest disagrees; run `wv shard verify`")
                parts[SCORES_PART] = documents[index]
                offsets.append(writer.write_sample(key, dict(sorted(parts.items()))))
            writer.close()
        if len(offsets) != manifest.height:
            raise WvError(f"{job.shard}: the tar holds {len(offsets)} samples, the manifest {manifest.height}; run `wv shard verify`")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    copy_sidecars(source, target, job.shard, job.scores)
    return record_shard(target, job.shard, manifest, offsets, writer)


def score_documents(source: Root, shard: str, names, keys: pl.Series) -> list[bytes]:
    """One JSON object per sample: {score: {column: value}}; NaN becomes null."""
    per_sample = [{} for _ in range(keys.len())]
    for name in names:
        frame = sidecars.read_score(source, name, shard, keys=keys)
        for row, values in zip(per_sample, frame.drop("__key__").iter_rows(named=True)):
            row[name] = {column: finite(value) for column, value in values.items()}
    return [json.dumps(row, ensure_ascii=False, allow_nan=False).encode() for row in per_sample]


def finite(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def copy_sidecars(source: Root, target: Root, shard: str, names) -> None:
    pairs = [(source.meta_path(shard), target.meta_path(shard))]
    pairs += [(source.score_path(name, shard), target.score_path(name, shard)) for name in names]
    for src, dst in pairs:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def record_shard(target: Root, shard: str, manifest: pl.DataFrame, offsets: list, writer: TarShardWriter) -> dict:
    ledger = target.path / ".bake"
    parts = manifest.with_columns(pl.Series("offset", [o for o, _ in offsets], pl.Int64), pl.Series("length", [n for _, n in offsets], pl.Int64))
    write_parquet(ledger / f"{shard}.manifest.parquet", parts)
    record = {"name": shard, "split": manifest["split"][0], "samples": manifest.height, "bytes": writer.offset, "sha256": writer.sha256.hexdigest()}
    write_json(ledger / f"{shard}.done.json", record)
    return record


# -- the root's tables ---------------------------------------------------------------------------------
def finalize(source: Root, target: Root, records: list) -> None:
    shards = pl.DataFrame(
        [{**r, "path": f"shards/{r['name']}.tar"} for r in records],
        schema={"name": pl.String, "split": pl.String, "samples": pl.Int64, "bytes": pl.Int64, "sha256": pl.String, "path": pl.String},
    )
    write_parquet(target.shards_table_path, shards)
    with atomic_path(target.manifest_path) as tmp:
        pl.scan_parquet([target.path / ".bake" / f"{r['name']}.manifest.parquet" for r in records]).sink_parquet(tmp)
    if source.rejects_path.is_file():
        with atomic_path(target.rejects_path) as tmp:
            shutil.copyfile(source.rejects_path, tmp)
    baked = {r["split"] for r in records}
    for name in sidecars.score_names(target):
        run = source.path / "scores" / name / "_run.json"
        if run.is_file():
            with atomic_path(target.path / "scores" / name / "_run.json") as tmp:
                shutil.copyfile(run, tmp)
    info = target.info()
    info["baked"]["complete"] = True
    info["baked"]["splits"] = sorted(baked)
    write_json(target.info_path, info)
