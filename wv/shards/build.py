"""`wv shard build`: WebVision (1.0 or 2.0 layout) -> webdataset shards in a dataset root.

Plan (file lists as polars tables, deterministic shuffle, shard assignment) -> meta index (each
query's JSON once, into SQLite) -> shard tasks in parallel (see build_task.py) -> finalize (manifest,
shards and rejects tables, wv.json). A killed build re-run with the same options skips every shard
whose ledger entry is complete and valid; options that differ from the first run are refused.
"""

import json
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

import wv
from wv.atomic import atomic_path, remove_stale_temps, write_json, write_parquet
from wv.errors import WvError
from wv.parallel import Workers, check_workers
from wv.progress import bar_options
from wv.shards.build_task import REJECT_SCHEMA, ShardJob, write_shard
from wv.shards.layout import list_entries, open_webvision, resolve_image_dirs
from wv.shards.lock import writing
from wv.shards.meta import MetaIndex, index_query
from wv.shards.options import BuildOptions
from wv.shards.root import FORMAT, Root


@dataclass
class BuildReport:
    split: str
    planned: int
    written: int
    rejected: int
    shards: int
    shards_built: int
    shards_skipped: int
    bytes: int
    seconds: float
    root: str


def build(webvision_root: str | Path, root: str | Path, options: BuildOptions, workers: int = 1, executor: str = "local", progress: bool = True, ray_address: str | None = None) -> BuildReport:
    """Every option, the source and the root are checked and the plan made before anything is written."""
    options.validate()
    check_workers(workers, executor)
    started = time.perf_counter()
    source = open_webvision(webvision_root)
    root = Root(root)
    check_root_path(source, root)
    if options.split == "train" and options.sources is None:
        options = BuildOptions(**{**asdict(options), "sources": tuple(source.available_sources())})
    check_split(root, source, options)
    plan, plan_rejects = make_plan(source, options)
    with Workers(workers, executor, ray_address) as pool:  # a Ray cluster out of reach: refused before writing
        root.path.mkdir(parents=True, exist_ok=True)
        with build_lock(root):
            start_split(root, source, options)
            write_parquet(root.build_dir(options.split) / "plan_rejects.parquet", plan_rejects)
            meta_index = index_meta(root, source, plan, pool, progress) if options.split == "train" else None
            done = run_shards(root, source, options, plan, meta_index, pool, progress)
            report = finish_split(root, options, plan, done)
            if meta_index is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{meta_index}{suffix}").unlink(missing_ok=True)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def check_root_path(source, root: Root) -> None:
    """ROOT is a new or empty folder, or a wv root, and neither it nor the source holds the other."""
    webvision, target = source.root.resolve(), root.path.resolve()
    if target == webvision or webvision in target.parents:
        raise WvError(f"{root.path} is inside the WebVision download {source.root}; build into a folder outside it")
    if target in webvision.parents:
        raise WvError(f"the WebVision download {source.root} is inside {root.path}; build into a folder that does not hold it")
    if root.path.exists() and not root.path.is_dir():
        raise WvError(f"{root.path} is a file, not a folder; build into a new folder")
    if root.path.is_dir() and not root.exists() and any(p.name != ".build" for p in root.path.iterdir()):
        raise WvError(f"{root.path} holds files but is not a wv dataset root (no wv.json); build into a new or empty folder")


def build_lock(root: Root):
    return writing(root, "shard build")


@dataclass
class Plan:
    """Which entries go into which shard: shard n holds entries[order[n * size:(n + 1) * size]].

    The entries stay in list order and are gathered per shard, so no second, shuffled copy of a
    16M-row table is ever made.
    """

    entries: pl.DataFrame  # compact rows: wv.shards.layout.COMPACT
    order: np.ndarray
    shard_size: int
    prefixes: dict

    @property
    def height(self) -> int:
        return self.entries.height

    @property
    def shards(self) -> int:
        return -(-self.height // self.shard_size)

    def shard_entries(self, number: int) -> pl.DataFrame:
        """Shard `number`'s compact rows; the shard task expands them (wv.shards.layout.sample_rows)."""
        return self.entries[self.order[number * self.shard_size : (number + 1) * self.shard_size]]

    def queries(self) -> list[tuple[str, str]]:
        pairs = self.entries.lazy().select("source", "query").unique().select(pl.all().cast(pl.String))
        return pairs.sort("source", "query").collect().rows()


def make_plan(source, options: BuildOptions) -> tuple[Plan, pl.DataFrame]:
    """-> (the plan, rejects found while planning)."""
    entries, rejects = list_entries(source, options.split, options.sources or ())
    if entries.height == 0:
        raise WvError(f"the {options.split} file lists of {source.root} have no usable entries")
    prefixes = resolve_image_dirs(source, entries, options.split, options.images_dir)
    order = np.arange(entries.height, dtype=np.uint32)
    np.random.default_rng(options.seed).shuffle(order)  # the same order as permutation(), in half the memory
    return Plan(entries, order, options.shard_size, prefixes), plan_rejects_frame(rejects, options.split)


def plan_rejects_frame(rejects: pl.DataFrame, split: str) -> pl.DataFrame:
    if rejects.height == 0:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    return rejects.select(
        pl.lit(split).alias("split"),
        pl.lit(None, pl.String).alias("__key__"),
        pl.lit("").alias("source"),
        pl.lit("").alias("query"),
        pl.concat_str(pl.col("list"), pl.lit(":"), pl.col("line").cast(pl.String), pl.lit(": "), pl.col("rel_path")).alias("path"),
        pl.lit(None, pl.Int32).alias("label"),
        pl.col("reason"),
    )


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}"


def check_split(root: Root, source, options: BuildOptions) -> dict:
    """The root's wv.json with this split's options added (not written); refuses a root built from
    another source, other classes or other options."""
    classes = [{"label": c.label, "synset": c.synset, "names": c.names} for c in source.classes]
    info = root.info() if root.exists() else {"format": FORMAT, "classes": classes, "splits": {}}  # info() checks its shape
    info.setdefault("splits", {})
    recorded = info["source"].get("root") if isinstance(info.get("source"), dict) else None
    here = str(source.root.resolve())
    if recorded is not None and recorded != here:
        raise WvError(f"{root.path} was built from {recorded}, not {here}; build another source into a new root")
    if info.get("classes") != classes:
        raise WvError(f"{root.path} was built from a dataset with other classes; build into a new root")
    chosen = asdict(options)
    chosen["sources"] = list(chosen["sources"]) if chosen["sources"] is not None else None
    previous = info["splits"].get(options.split)
    if previous and previous["options"] != chosen:
        changed = sorted(k for k in chosen if previous["options"].get(k) != chosen[k])
        raise WvError(f"{root.path} already holds a {options.split} build with other options ({', '.join(changed)}); re-run with the same options to resume it, or build into a new root")
    info["wv_version"] = wv.__version__
    info["source"] = {"root": here, "webvision_version": source.version}
    info["splits"][options.split] = previous or {"options": chosen, "complete": False}
    return info


def start_split(root: Root, source, options: BuildOptions) -> None:
    """Record the split's options in wv.json (checked again under the lock)."""
    write_json(root.info_path, check_split(root, source, options))


def index_meta(root: Root, source, plan: Plan, pool: Workers, progress: bool) -> str:
    """Copy every needed query's meta records into the on-disk index; resumes per query."""
    path = root.build_dir("train") / "meta.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    index = MetaIndex(path)
    try:
        done = index.done_queries()
        queries = plan.queries()
        todo = [(s, q, str(source.meta_path(s, q))) for s, q in queries if (s, q) not in done]
        bar = tqdm(total=len(queries), initial=len(queries) - len(todo), desc="meta index", unit="query", **bar_options(progress))
        results = pool.map(index_query, todo, window=16 * pool.workers)
        while batch := list(islice(results, 64)):
            index.add_queries(batch)  # one transaction per 64 query files
            bar.update(len(batch))
        bar.close()
    finally:
        index.close()
    return str(path)


def run_shards(root: Root, source, options: BuildOptions, plan: Plan, meta_index, pool: Workers, progress: bool) -> list[dict]:
    split = options.split
    remove_stale_temps(root.shards_dir)
    remove_stale_temps(root.path / "meta")
    remove_stale_temps(root.build_dir(split))
    n_shards = plan.shards
    done = {}
    for number in range(n_shards):
        record = completed_shard(root, split, shard_name(split, number))
        if record:
            done[number] = record
    bar = tqdm(total=plan.height, desc=f"shard build {split}", unit="img", **bar_options(progress), initial=sum(r["samples"] + r["rejected"] for r in done.values()))
    jobs = (
        ShardJob(
            root=str(root.path),
            webvision_root=str(source.root),
            split=split,
            shard=shard_name(split, number),
            entries=plan.shard_entries(number),
            prefixes=plan.prefixes,
            check=options.check,
            resize=options.resize,
            quality=options.quality,
            meta_index=meta_index,
        )
        for number in range(n_shards)
        if number not in done
    )
    built = 0
    for record in pool.map(write_shard, jobs):
        done[int(record["name"].rsplit("-", 1)[1])] = {**record, "built": True}
        built += 1
        bar.update(record["samples"] + record["rejected"])
    bar.close()
    return [done[n] for n in sorted(done)]


def completed_shard(root: Root, split: str, shard: str) -> dict | None:
    """The ledger entry of a shard that is complete and still matches its files, else None."""
    done_path = root.build_dir(split) / "parts" / f"{shard}.done.json"
    try:
        record = json.loads(done_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    manifest_part = root.build_dir(split) / "parts" / f"{shard}.manifest.parquet"
    if not manifest_part.is_file():
        return None
    if record["samples"]:
        tar = root.shard_path(shard)
        if not tar.is_file() or tar.stat().st_size != record["bytes"] or not root.meta_path(shard).is_file():
            return None
    return record


def finish_split(root: Root, options: BuildOptions, plan: Plan, done: list[dict]) -> BuildReport:
    info = root.info()
    written = sum(r["samples"] for r in done)
    plan_rejects = pl.read_parquet(root.build_dir(options.split) / "plan_rejects.parquet").height
    rejected = plan_rejects + sum(r["rejected"] for r in done)
    summary = {"complete": True, "planned": plan.height, "samples": written, "rejected": rejected, "shards": sum(1 for r in done if r["samples"])}
    info["splits"][options.split].update(summary)
    write_json(root.info_path, info)
    finalize(root, [name for name, split in info["splits"].items() if split["complete"]])
    built = sum(1 for r in done if r.get("built"))
    return BuildReport(
        split=options.split,
        planned=plan.height,
        written=written,
        rejected=rejected,
        shards=summary["shards"],
        shards_built=built,
        shards_skipped=len(done) - built,
        bytes=sum(r["bytes"] for r in done),
        seconds=0.0,
        root=str(root.path),
    )


def finalize(root: Root, splits: list[str]) -> None:
    """Gather the complete splits' ledgers into manifest.parquet, shards.parquet and rejects.parquet."""
    dirs = [root.build_dir(split) for split in sorted(splits)]
    records = [json.loads(p.read_text()) for d in dirs for p in sorted(d.glob("parts/*.done.json"))]
    shards = pl.DataFrame(
        [{"name": r["name"], "split": r["split"], "samples": r["samples"], "bytes": r["bytes"], "sha256": r["sha256"], "path": f"shards/{r['name']}.tar"} for r in records if r["samples"]],
        schema={"name": pl.String, "split": pl.String, "samples": pl.Int64, "bytes": pl.Int64, "sha256": pl.String, "path": pl.String},
    )
    write_parquet(root.shards_table_path, shards)
    manifests = [p for d in dirs for p in sorted(d.glob("parts/*.manifest.parquet"))]
    with atomic_path(root.manifest_path) as tmp:
        pl.scan_parquet(manifests).sink_parquet(tmp)  # streams: never the whole manifest in memory
    rejects = [p for d in dirs for p in [d / "plan_rejects.parquet", *sorted(d.glob("parts/*.rejects.parquet"))]]
    with atomic_path(root.rejects_path) as tmp:
        pl.scan_parquet(rejects).sink_parquet(tmp)
