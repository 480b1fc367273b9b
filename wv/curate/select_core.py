"""The decisions of `wv select` on polars frames: no dataset root, no files.

A frame holds one row per sample: __key__, meta.label, meta.source and the score columns the rules
read, named "score.column". On it:
  - `with_decisions`: which rules fire, and the first that does (the sample's reason);
  - `count_decisions` / `merge_counts`: samples per (class, source, first rule), how many each rule matched;
  - `rescue_counts`: per class, how many matched samples the protection of small classes keeps (never
    below min_per_class samples, never more than max_drop_fraction of a class dropped);
  - `candidates` / `choose_rescued`: which ones: the least bad, ranked within their rule by its score;
  - `decisions`: keep, rule (why dropped) and matched (the first rule that matched).
`evaluate_rules` runs them all on one frame in memory; wv.curate.select runs the same steps shard by
shard over a dataset root, in three streaming passes, and writes the selection sidecar.
"""

import hashlib
import math
from collections.abc import Sequence

import polars as pl

from wv.curate.rules import Rule, compile_rules

COUNT_KEYS = ["meta.label", "meta.source", "first"]


def frame_schemas(frame: pl.DataFrame) -> dict[str, dict]:
    """score -> {column: dtype} of a frame's "score.column" columns (meta.label etc. under "meta")."""
    schemas: dict[str, dict] = {}
    for name, dtype in frame.schema.items():
        score, dot, column = name.partition(".")
        if dot:
            schemas.setdefault(score, {})[column] = dtype
    return schemas


def with_decisions(frame: pl.DataFrame, rules: Sequence[Rule], schemas: dict[str, dict]) -> pl.DataFrame:
    """Adds _r0.._rN (each rule fires) and `first` (index of the first rule that fired, or null)."""
    fired = [rule.expression(schemas).alias(f"_r{i}") for i, rule in enumerate(rules)]
    frame = frame.with_columns(fired)
    first = pl.coalesce([pl.when(pl.col(f"_r{i}")).then(pl.lit(i, pl.Int16)) for i in range(len(rules))])
    return frame.with_columns(first.alias("first"))


def count_decisions(frame: pl.DataFrame, n_rules: int) -> pl.DataFrame:
    """Of a frame `with_decisions`: samples per (label, source, first rule), and how many each rule matched at all."""
    return frame.group_by(*COUNT_KEYS).agg(pl.len().alias("n"), *[pl.col(f"_r{i}").sum().alias(f"matched{i}") for i in range(n_rules)])


def merge_counts(parts: list[pl.DataFrame], n_rules: int) -> pl.DataFrame:
    """Count tables (of `count_decisions`, or earlier merges) summed into one."""
    sums = [pl.col("n").sum(), *[pl.col(f"matched{i}").sum() for i in range(n_rules)]]
    return pl.concat(parts).group_by(COUNT_KEYS).agg(sums)


def allowed_drops(samples: int, min_per_class: int, max_drop_fraction: float) -> int:
    return max(0, min(samples - min_per_class, math.floor(max_drop_fraction * samples + 1e-9)))


def rescue_counts(counts: pl.DataFrame, min_per_class: int, max_drop_fraction: float) -> pl.DataFrame:
    """label -> how many of its matched samples class protection keeps (classes with none left out).
    `counts`: merged counts with the columns label, source, first, n."""
    per_class = counts.group_by("label").agg(pl.col("n").sum().alias("samples"), pl.col("n").filter(pl.col("first").is_not_null()).sum().alias("matched"))
    allowed = [allowed_drops(n, min_per_class, max_drop_fraction) for n in per_class["samples"]]
    per_class = per_class.with_columns(pl.Series("allowed", allowed, dtype=pl.Int64))
    rescue = per_class.select("label", (pl.col("matched") - pl.col("allowed")).clip(lower_bound=0).alias("rescue"))
    return rescue.filter(pl.col("rescue") > 0).sort("label")


def candidates(frame: pl.DataFrame, rules: Sequence[Rule], schemas: dict[str, dict], protected: pl.DataFrame) -> pl.DataFrame:
    """Of a frame `with_decisions`: the matched samples of the `protected` labels, with how bad each is by its rule's score."""
    frame = frame.filter(pl.col("first").is_not_null() & pl.col("meta.label").is_in(list(protected)))
    badness = pl.lit(None, pl.Float64)
    for i, rule in enumerate(rules):
        ranking = rule.ranking(schemas)
        value = pl.lit(0.0) if ranking is None else pl.col(ranking[0]).cast(pl.Float64) * ranking[1]
        badness = pl.when(pl.col("first") == i).then(value).otherwise(badness)
    return frame.select(
        "__key__",
        pl.col("meta.label").alias("label"),
        pl.col("meta.source").alias("source"),
        "first",
        badness.fill_null(float("inf")).fill_nan(float("inf")).alias("badness"),
    )


def tiebreak(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big") >> 1


def choose_rescued(candidates: pl.DataFrame, rescue: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Per class, the `rescue` least-bad matched samples: ranked within their rule by its score
    (as a percentile, so rules on different scales mix fairly), ties broken by a seeded hash."""
    if candidates.height == 0:
        return candidates.with_columns(pl.lit(0.0).alias("pct"))
    ranked = candidates.with_columns(
        (pl.col("badness").rank("average").over("label", "first") / pl.len().over("label", "first")).alias("pct"),
        pl.col("__key__").map_elements(lambda k: tiebreak(seed, k), return_dtype=pl.UInt64).alias("tie"),
    ).sort("label", "pct", "tie")
    ranked = ranked.join(rescue, on="label").with_columns(pl.int_range(pl.len()).over("label").alias("order"))
    return ranked.filter(pl.col("order") < pl.col("rescue")).drop("order", "rescue", "tie")


def decisions(frame: pl.DataFrame, rules: Sequence[Rule], rescued: pl.DataFrame) -> pl.DataFrame:
    """Of a frame `with_decisions`: __key__, keep, rule (the rule that dropped it; null when kept) and
    matched (the first rule that matched, also when class protection kept it, the keys `rescued`)."""
    names = {i: rule.text for i, rule in enumerate(rules)}
    matched = pl.col("first").replace_strict(names, default=None, return_dtype=pl.String)
    keep = pl.col("first").is_null() | pl.col("__key__").is_in(list(rescued))
    decided = frame.select("__key__", keep.alias("keep"), matched.alias("matched"))
    decided = decided.with_columns(pl.when(pl.col("keep")).then(None).otherwise(pl.col("matched")).alias("rule"))
    return decided.select("__key__", "keep", "rule", "matched")


def evaluate_rules(frame: pl.DataFrame, rules: list[str], min_per_class: int, max_drop_fraction: float, seed: int) -> pl.DataFrame:
    """`wv select` on one in-memory frame (__key__, meta.label, meta.source, "score.column"s):
    -> __key__, keep, rule, matched, in the frame's order; the same decisions the command writes."""
    schemas = frame_schemas(frame)
    compiled = compile_rules(list(rules), schemas)
    decided = with_decisions(frame, compiled, schemas)
    counts = merge_counts([count_decisions(decided, len(compiled))], len(compiled))
    rescue = rescue_counts(counts.rename({"meta.label": "label", "meta.source": "source"}), min_per_class, max_drop_fraction)
    rescued = []
    if rescue.height:
        chosen = choose_rescued(candidates(decided, compiled, schemas, rescue["label"].to_list()), rescue, seed)
        rescued = chosen["__key__"].to_list()
    return decisions(decided, compiled, rescued)
