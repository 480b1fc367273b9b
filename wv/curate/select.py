"""`wv select`: decide which samples are discarded, and why, from drop rules over score sidecars.

Writes the sidecar ROOT/scores/selection/{shard}.parquet: __key__, keep (bool), rule (the rule that
dropped the sample; null when kept) and matched (the first rule that matched, also when class
protection kept the sample). The stream reads `keep`.

Three streaming passes over the shards, each reading only the columns the rules need:
  1. count, per class and source, which rule matched each sample first;
  2. only for classes where the rules would go past the protection limits (never below
     --min-per-class samples, never more than --max-drop-fraction of a class): collect the dropped
     samples of those classes and keep the least bad ones, ranked within their rule by its score;
  3. write the decisions, shard by shard (a re-run resumes).
Memory: per-class counts, plus the matched samples of protected classes only.

The decisions themselves (rules fired, counts, protection, keep) are wv.curate.select_core, on
polars frames without a root; this module is its driver: sidecars in, the selection sidecar out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from wv.atomic import write_json
from wv.curate.options import SELECTION, SelectOptions
from wv.curate.rules import META, META_COLUMNS, Rule, compile_rules
from wv.curate.select_core import candidates, choose_rescued, count_decisions, decisions, merge_counts, rescue_counts, with_decisions
from wv.errors import WvError
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "select"
REDUCE_EVERY = 64  # partial count tables merged every this many shards


# -- reading scores shard by shard ------------------------------------------------------------------
def score_schemas(root: Root, shards: list[str], exclude: tuple[str, ...] = (SELECTION,)) -> dict[str, dict]:
    """score name -> {column: dtype}, from the first shard's sidecar; plus the `meta` columns."""
    schemas = {META: dict(META_COLUMNS)}
    for name in sidecars.score_names(root):
        path = root.score_path(name, shards[0])
        if name in (*exclude, META) or not path.is_file():
            continue
        schema = pl.read_parquet_schema(path)
        schemas[name] = {column: dtype for column, dtype in schema.items() if column != "__key__"}
    return schemas


def check_complete(root: Root, names, shards: list[str]) -> None:
    for name in names:
        if name == META:
            continue
        missing = [s for s in shards if not root.score_path(name, s).is_file()]
        if missing:
            raise WvError(f"score {name!r} is missing for {len(missing)} of {len(shards)} shard(s), e.g. {missing[0]}; run its scorer first")


def shard_frame(root: Root, shard: str, columns: Sequence[str], meta_columns: tuple[str, ...] = ("label", "source")) -> pl.DataFrame:
    """__key__, meta.label, meta.source ... and the qualified score columns, in shard order."""
    meta_wanted = list(dict.fromkeys([*meta_columns, *(c.split(".", 1)[1] for c in columns if c.startswith(META + "."))]))
    frame = pl.read_parquet(root.meta_path(shard), columns=["__key__", *meta_wanted])
    frame = frame.rename({c: f"{META}.{c}" for c in meta_wanted})
    scores = [c for c in columns if not c.startswith(META + ".")]
    return frame.hstack(sidecars.read_columns(root, shard, scores, keys=frame["__key__"]).drop("__key__"))


@dataclass(frozen=True)
class ShardJob:
    root: str
    shard: str
    rules: tuple
    schemas: dict
    protected: frozenset = frozenset()  # pass 2: labels whose matched samples are collected
    rescued: frozenset = frozenset()  # pass 3: keys kept by class protection
    name: str = SELECTION  # pass 3: the sidecar written


def load(job: ShardJob) -> tuple[Root, list[Rule], pl.DataFrame]:
    root = Root(job.root)
    rules = compile_rules(list(job.rules), job.schemas)
    columns = list(dict.fromkeys(c for rule in rules for c in rule.columns))
    return root, rules, with_decisions(shard_frame(root, job.shard, columns), rules, job.schemas)


def count_shard(job: ShardJob) -> pl.DataFrame:
    """Pass 1: samples per (label, source, first rule), and how many each rule matched at all."""
    _, rules, frame = load(job)
    return count_decisions(frame, len(rules))


def candidates_shard(job: ShardJob) -> pl.DataFrame:
    """Pass 2: the matched samples of protected classes, with how bad each is by its rule's score."""
    _, rules, frame = load(job)
    return candidates(frame, rules, job.schemas, job.protected)


def write_shard(job: ShardJob) -> str:
    """Pass 3: the shard's selection sidecar."""
    root, rules, frame = load(job)
    sidecars.write_scores(root, job.name, job.shard, decisions(frame, rules, job.rescued))
    return job.shard


# -- the whole run ---------------------------------------------------------------------------------------
def select(
    root: str | Path,
    rules: Sequence[str],
    min_per_class: int = 10,
    max_drop_fraction: float = 0.5,
    split: str = "train",
    seed: int = 0,
    dry_run: bool = False,
    overwrite: bool = False,
    name: str = SELECTION,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> dict:
    """Apply drop rules to every sample of `split`; write ROOT/scores/{name} (unless dry_run).

    Returns the figures: samples, kept, dropped, protected, per rule, per class, per source, paths.
    """
    root = Root(root)
    options = SelectOptions(tuple(rules), min_per_class, max_drop_fraction, split, seed)
    options.validate()
    check_name(name)
    shards = root.shard_names(split)
    if not shards:
        raise WvError(f"{root.path} has no {split} shards")
    schemas = score_schemas(root, shards, exclude=(name,))
    compiled = compile_rules(list(options.rules), schemas)
    used = sorted({c.split(".", 1)[0] for rule in compiled for c in rule.columns} - {META})
    check_complete(root, used, shards)
    schemas = {score: cols for score, cols in schemas.items() if score in used or score == META}  # what workers need
    base = dict(root=str(root.path.absolute()), rules=options.rules, schemas=schemas)

    if dry_run:
        return decide(root, options, shards, compiled, used, base, workers, executor, ray_address, progress)
    sidecars.run_record(root, "scores", name, COMMAND).check_owner()
    with writing(root, COMMAND):
        return decide(root, options, shards, compiled, used, base, workers, executor, ray_address, progress, overwrite, name)


def decide(root: Root, options: SelectOptions, shards, compiled, used, base: dict, workers, executor, ray_address, progress, overwrite: bool = False, name: str | None = None) -> dict:
    """Count, protect small classes, summarise; with a `name`, write the sidecar ROOT/scores/{name}."""
    with Workers(workers, executor, ray_address) as pool:
        counts = count_all(pool, [ShardJob(shard=s, **base) for s in shards], len(compiled), progress)
        rescue = rescue_counts(counts, options.min_per_class, options.max_drop_fraction)
        rescued = pl.DataFrame(schema={"__key__": pl.String, "label": pl.Int32, "source": pl.String, "first": pl.Int16})
        if rescue.height:
            protected = frozenset(rescue["label"].to_list())
            jobs = [ShardJob(shard=s, protected=protected, **base) for s in shards]
            parts = list(tqdm(pool.map(candidates_shard, jobs), total=len(jobs), desc="select: protect", **bar_options(progress)))
            rescued = choose_rescued(pl.concat(parts), rescue, options.seed).select("__key__", "label", "source", "first")
        figures = summarize(root, compiled, counts, rescued, options)
        if name is None:
            figures["paths"] = {}
            return figures
        figures.update(write_all(pool, root, base, shards, rescued, options, used, overwrite, name, progress))
    write_json(sidecars.sidecar_dir(root, "scores", name) / "_summary.json", figures)
    return figures


def count_all(pool, jobs, n_rules: int, progress: bool) -> pl.DataFrame:
    parts, merged = [], None
    for part in tqdm(pool.map(count_shard, jobs), total=len(jobs), desc="select: count", **bar_options(progress)):
        parts.append(part)
        if len(parts) >= REDUCE_EVERY:
            merged = merge_counts(([merged] if merged is not None else []) + parts, n_rules)
            parts = []
    merged = merge_counts(([merged] if merged is not None else []) + parts, n_rules)
    return merged.rename({"meta.label": "label", "meta.source": "source"})


def write_all(pool, root: Root, base: dict, shards, rescued: pl.DataFrame, options: SelectOptions, used, overwrite, name, progress) -> dict:
    inputs = {score: sidecars.run_record(root, "scores", score, COMMAND).options() for score in used}
    run_options = {"rules": list(options.rules), "min_per_class": options.min_per_class, "max_drop_fraction": options.max_drop_fraction, "split": options.split, "seed": options.seed, "inputs": inputs}
    todo = sidecars.begin_run(root, "scores", name, run_options, overwrite=overwrite, split=options.split, command=COMMAND)
    by_shard = {}
    if rescued.height:
        keys = rescued["__key__"].implode()
        located = root.manifest(options.split).select("__key__", "shard").filter(pl.col("__key__").is_in(keys)).collect(engine="streaming")
        for shard, keys in located.group_by("shard"):
            by_shard[shard[0]] = frozenset(keys["__key__"].to_list())
    jobs = [ShardJob(shard=s, rescued=by_shard.get(s, frozenset()), name=name, **base) for s in todo]
    for _ in tqdm(pool.map(write_shard, jobs), total=len(jobs), desc="select: write", **bar_options(progress)):
        pass
    folder = sidecars.sidecar_dir(root, "scores", name)
    return {"shards_written": len(todo), "shards_skipped": len(shards) - len(todo), "paths": {"selection": str(folder), "summary": str(folder / "_summary.json")}}


def summarize(root: Root, rules, counts: pl.DataFrame, rescued: pl.DataFrame, options: SelectOptions) -> dict:
    names = {c["label"]: c["names"] for c in root.classes()}
    texts = [rule.text for rule in rules]
    matched = counts.filter(pl.col("first").is_not_null())
    saved = rescued.group_by("label", "source", "first").len().rename({"len": "saved"})
    matched = matched.join(saved, on=["label", "source", "first"], how="left").with_columns(pl.col("saved").fill_null(0))
    matched = matched.with_columns((pl.col("n") - pl.col("saved")).alias("dropped"))
    samples, dropped, protected = int(counts["n"].sum()), int(matched["dropped"].sum()), int(matched["saved"].sum())
    per_rule = []
    for i, text in enumerate(texts):
        mine = matched.filter(pl.col("first") == i)
        per_rule.append({"rule": text, "matched": int(counts[f"matched{i}"].sum()), "first": int(mine["n"].sum()), "dropped": int(mine["dropped"].sum()), "protected": int(mine["saved"].sum())})
    return {
        "samples": samples,
        "kept": samples - dropped,
        "dropped": dropped,
        "protected": protected,
        "drop_rate": dropped / samples if samples else 0.0,
        "split": options.split,
        "options": {"min_per_class": options.min_per_class, "max_drop_fraction": options.max_drop_fraction, "seed": options.seed},
        "rules": per_rule,
        "classes": per_class_figures(counts, matched, texts, names),
        "sources": per_group_figures(counts, matched, "source"),
    }


def per_class_figures(counts, matched, texts, names) -> list[dict]:
    totals = counts.group_by("label").agg(pl.col("n").sum().alias("samples"))
    by_rule = matched.group_by("label", "first").agg(pl.col("dropped").sum(), pl.col("saved").sum())
    table = totals.join(by_rule.group_by("label").agg(pl.col("dropped").sum(), pl.col("saved").sum()), on="label", how="left")
    table = table.fill_null(0).with_columns((pl.col("dropped") / pl.col("samples")).alias("drop_rate"))
    rules_of = {}
    for row in by_rule.iter_rows(named=True):
        if row["dropped"]:
            rules_of.setdefault(row["label"], {})[texts[row["first"]]] = row["dropped"]
    return [
        {
            "label": row["label"],
            "names": names.get(row["label"], ""),
            "samples": row["samples"],
            "dropped": row["dropped"],
            "protected": row["saved"],
            "drop_rate": round(row["drop_rate"], 6),
            "by_rule": rules_of.get(row["label"], {}),
        }
        for row in table.sort(["drop_rate", "label"], descending=[True, False]).iter_rows(named=True)
    ]


def per_group_figures(counts, matched, column: str) -> dict:
    totals = counts.group_by(column).agg(pl.col("n").sum().alias("samples"))
    gone = matched.group_by(column).agg(pl.col("dropped").sum())
    table = totals.join(gone, on=column, how="left").fill_null(0).sort(column)
    return {row[column]: {"samples": row["samples"], "dropped": row["dropped"]} for row in table.iter_rows(named=True)}


def read_selection(root, split: str = "train", name: str = SELECTION) -> pl.LazyFrame:
    """The selection sidecar of every shard of `split`, with a `shard` column (see sidecars.read_scores)."""
    return sidecars.read_scores(Root(root), name, split=split)


def summary_lines(figures: dict, show_classes: int = 20) -> list[str]:
    n = figures["samples"]
    lines = [f"{n} samples: kept {figures['kept']}, dropped {figures['dropped']} ({100 * figures['drop_rate']:.1f}%), kept by class protection {figures['protected']}"]
    for r in figures["rules"]:
        lines.append(f"rule {r['rule']!r}: matches {r['matched']}, drops {r['dropped']}, protected {r['protected']}")
    for source, s in figures["sources"].items():
        lines.append(f"source {source}: drops {s['dropped']} of {s['samples']}")
    classes = figures["classes"]
    shown = classes[:show_classes]
    lines.append(f"classes by drop rate ({len(shown)} of {len(classes)}):")
    for c in shown:
        rules = ", ".join(f"{v} by {k!r}" for k, v in c["by_rule"].items())
        lines.append(
            f"  {c['label']:>5} {c['names'][:36]:<36} drops {c['dropped']:>6} of {c['samples']:<6} "
            f"({100 * c['drop_rate']:5.1f}%){'; protected ' + str(c['protected']) if c['protected'] else ''}"
            f"{'; ' + rules if rules else ''}"
        )
    return lines
