"""What `wv audit` reads (wv.curate.audit drives it): the selection and its rules, checked before anything is
written, and the first streaming pass over the shards: per shard, the counts by class, source, state and
rule, the rules' score histograms, and the samples each class page shows (the `per_class` smallest
seeded hashes of the keys per class and state, so the pick streams and merges)."""

from dataclasses import dataclass

import numpy as np
import polars as pl
from tqdm import tqdm

from wv.curate.options import AuditOptions
from wv.curate.rules import META, compile_rules, dtype_kind
from wv.curate.select import COMMAND as SELECT_COMMAND
from wv.curate.select import score_schemas, shard_frame
from wv.curate.select_core import tiebreak
from wv.errors import WvError, first_line
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.root import Root

STATES = ("dropped", "protected", "kept")  # protected: a rule matched, class protection kept it
REDUCE_EVERY = 64


@dataclass(frozen=True)
class Histogram:
    rule: int  # index of the rule
    column: str  # "score.column"
    edges: tuple
    integer: bool
    marks: tuple  # ((op, value), ...)


# -- what to read -----------------------------------------------------------------------------------------
def selection_rules(root: Root, name: str) -> list[str]:
    record = sidecars.run_record(root, "scores", name, SELECT_COMMAND)
    record.check_owner()
    options = record.options()
    if options is None:
        raise WvError(f"{root.path} has no selection {name!r}; run `wv select {root.path} --drop RULE` first")
    rules = options.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise WvError(f"scores/{name} of {root.path} is not a selection made by `wv select`; give --selection the --name of one")
    return rules


def check_selection(root: Root, name: str, split: str) -> None:
    for shard, samples in root.shards(split).select("name", "samples").iter_rows():
        if not sidecars.complete(root, "scores", name, shard, samples):
            raise WvError(f"the selection {name!r} is incomplete (shard {shard}); re-run the same `wv select` to finish it")


def check_sidecars(root: Root, shards: list[str], scores: set) -> None:
    """Every shard's meta sidecar and the rules' score sidecars must be there before the report is begun."""
    for shard in shards:
        for path in (root.meta_path(shard), *(root.score_path(name, shard) for name in sorted(scores))):
            if not path.is_file():
                raise WvError(f"{path} is missing; re-run the command that writes it (or `wv shard build` for meta)")


def recompile(texts: list[str], schemas: dict, name: str) -> list:
    try:
        return compile_rules(texts, schemas)
    except WvError as error:
        raise WvError(f"the rules of selection {name!r} no longer fit the scores present ({error}); re-run `wv select`") from None


def display_columns(schemas: dict[str, dict]) -> dict[str, str]:
    """ "score.column" -> how a card shows it: number, bool, string or list (of strings); others are left out."""
    shown = {}
    for name, columns in schemas.items():
        if name == META:
            continue
        for column, dtype in columns.items():
            kind = dtype_kind(dtype)
            if kind == "other" and isinstance(dtype, pl.List) and dtype_kind(dtype.inner) == "string":
                kind = "list"
            if kind != "other":
                shown[f"{name}.{column}"] = kind
    return shown


def histogram_specs(root: Root, rules, schemas, shards, bins: int) -> list[Histogram]:
    specs = []
    for index, rule in enumerate(rules):
        for column, marks in rule.thresholds(schemas).items():
            if column.startswith(META + "."):
                continue
            name, _, col = column.partition(".")
            dtype = schemas[name][col]
            paths = [root.score_path(name, s) for s in shards]
            value = pl.col(col).cast(pl.Float64)
            value = pl.when(value.is_finite()).then(value)  # NaN and infinities would stretch the axis to nothing
            lo, hi = pl.scan_parquet(paths).select(value.min().alias("lo"), value.max().alias("hi")).collect().row(0)
            if lo is None:  # no value at all: an axis around the thresholds
                lo, hi = min(v for _, v in marks), max(v for _, v in marks)
            specs.append(Histogram(index, column, *bin_edges(lo, hi, dtype, bins), tuple(marks)))
    return specs


def bin_edges(lo: float, hi: float, dtype, bins: int) -> tuple[tuple, bool]:
    if (dtype.is_integer() or dtype == pl.Boolean) and hi - lo <= 60:
        return tuple(np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0).tolist()), True
    if hi <= lo:
        hi = lo + 1.0
    return tuple(np.linspace(lo, hi, bins + 1).tolist()), False


@dataclass(frozen=True)
class Inputs:
    """What the report reads besides the samples, read and checked before anything is written."""

    schemas: dict
    rules: list
    shown: dict
    specs: list


def read_inputs(root: Root, options: AuditOptions, shards: list, texts: list) -> Inputs:
    try:
        schemas = score_schemas(root, shards, exclude=(options.selection,))
    except (pl.exceptions.PolarsError, OSError) as error:
        raise WvError(f"a score sidecar of {shards[0]} cannot be read ({first_line(error)}); re-run its scorer") from None
    rules = recompile(texts, schemas, options.selection)
    shown = display_columns({n: cols for n, cols in schemas.items() if all(root.score_path(n, s).is_file() for s in shards)})
    try:
        specs = histogram_specs(root, rules, schemas, shards, options.bins)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise WvError(f"a score sidecar of the rules cannot be read ({first_line(error)}); re-run its scorer") from None
    check_sidecars(root, shards, {spec.column.partition(".")[0] for spec in specs})
    return Inputs(schemas, rules, shown, specs)


# -- pass 1: counts, histograms and the pick ---------------------------------------------------------------
@dataclass(frozen=True)
class TallyJob:
    root: str
    shard: str
    selection: str
    rules: tuple  # the rules' texts, as the selection records them
    columns: tuple  # the score columns the histograms read
    histograms: tuple
    limits: tuple  # how many samples each class shows, per state (STATES order)
    seed: int


def with_selection(root: Root, shard: str, name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Adds keep, rule, matched, state (dropped | protected | kept) and index (the row in the shard)."""
    chosen = sidecars.read_score(root, name, shard, ["keep", "rule", "matched"], keys=frame["__key__"])
    state = pl.when(~pl.col("keep")).then(pl.lit("dropped")).when(pl.col("matched").is_not_null()).then(pl.lit("protected")).otherwise(pl.lit("kept"))
    return frame.hstack(chosen.drop("__key__")).with_columns(state.alias("state"), pl.int_range(pl.len(), dtype=pl.Int64).alias("index"))


def selected_frame(root: Root, shard: str, selection: str, columns: list, **kw: tuple) -> pl.DataFrame:
    """The shard's meta and score columns with its selection; a missing or unreadable sidecar is one sentence."""
    try:
        return with_selection(root, shard, selection, shard_frame(root, shard, columns, **kw))
    except (pl.exceptions.PolarsError, OSError) as error:
        raise WvError(f"the sidecars of {shard} cannot be read ({first_line(error)}); re-run the command that wrote them") from None


def tally_shard(job: TallyJob) -> dict:
    root = Root(job.root)
    frame = selected_frame(root, job.shard, job.selection, list(job.columns))
    counts = frame.group_by(pl.col("meta.label").alias("label"), pl.col("meta.source").alias("source"), "state", "matched").len()
    hists = [histogram_counts(frame, spec, job.rules[spec.rule]) for spec in job.histograms]
    ties = pl.Series("tie", [tiebreak(job.seed, k) for k in frame["__key__"]], dtype=pl.UInt64)
    picks = frame.select("__key__", pl.col("meta.label").alias("label"), "state", "index", pl.lit(job.shard).alias("shard"))
    return {"counts": counts, "hists": hists, "picks": keep_smallest(picks.hstack([ties]), job.limits)}


def histogram_counts(frame: pl.DataFrame, spec: Histogram, rule: str) -> np.ndarray:
    """Counts per bin (4 x bins) for: kept, protected from this rule, dropped by it, dropped by another rule."""
    values = frame[spec.column].cast(pl.Float64)
    dropped = frame["state"] == "dropped"
    mine = (frame["matched"] == rule).fill_null(False)
    protected = mine & (frame["state"] == "protected")
    groups = (~dropped & ~protected, protected, dropped & mine, dropped & ~mine)
    edges = np.asarray(spec.edges)
    out = np.zeros((len(groups), len(edges) - 1), dtype=np.int64)
    for row, mask in enumerate(groups):
        picked = values.filter(mask).drop_nulls().drop_nans().to_numpy()
        out[row] = np.histogram(np.clip(picked, edges[0], edges[-1]), bins=edges)[0]
    return out


def keep_smallest(picks: pl.DataFrame, limits: tuple) -> pl.DataFrame:
    """Per (label, state): the rows with the smallest tie hashes, up to that state's limit."""
    limit = pl.col("state").replace_strict(dict(zip(STATES, limits)), return_dtype=pl.Int64)
    return picks.filter(pl.col("tie").rank("ordinal").over("label", "state") <= limit)


def tally_all(pool: Workers, jobs: list[TallyJob], progress: bool) -> tuple[pl.DataFrame, list[np.ndarray], pl.DataFrame]:
    counts, hists, picks, pending = None, None, None, []
    for result in tqdm(pool.map(tally_shard, jobs), total=len(jobs), desc="audit: tally", **bar_options(progress)):
        hists = result["hists"] if hists is None else [a + b for a, b in zip(hists, result["hists"])]
        pending.append(result)
        if len(pending) >= REDUCE_EVERY:
            counts, picks = merge(counts, picks, pending, jobs[0].limits)
            pending = []
    counts, picks = merge(counts, picks, pending, jobs[0].limits)
    return counts, hists or [], picks


def merge(counts, picks, pending, limits):
    counts = pl.concat(([counts] if counts is not None else []) + [r["counts"] for r in pending])
    counts = counts.group_by("label", "source", "state", "matched").agg(pl.col("len").sum())
    picks = keep_smallest(pl.concat(([picks] if picks is not None else []) + [r["picks"] for r in pending]), limits)
    return counts, picks
