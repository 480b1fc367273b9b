"""`wv audit`: a browsable HTML report of what `wv select` discarded, and why.

    OUT/index.html               overview: kept/dropped by rule, source and class; each rule's score
                                 histogram with its threshold; a mosaic of dropped images; the classes
    OUT/classes/{label}.html     per class: dropped images beside kept ones, with text, keywords, scores
    OUT/thumbs/{label}/{key}.jpg small JPEG thumbnails (the folder is self-contained and relocatable)
    OUT/report.json              the figures and the options

Two streaming passes over the shards. The first reads the selection, labels and the rules' score
columns: it counts, fills the histograms, and picks which samples each class page shows (a seeded
random sample per class: the `per_class` smallest hashes of the keys, so the pick streams and merges).
The second reads, shard by shard, only the samples picked: their text and scores, and their image
bytes through the manifest's byte ranges; only those images are decoded, into thumbnails.
Memory: the counts, the histograms and the shown samples (classes x per_class rows).
"""

import io
import json
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from tqdm import tqdm

from wv.atomic import write_bytes, write_json
from wv.curate import audit_assets as pages
from wv.curate.rules import META, compile_rules, dtype_kind
from wv.curate.select import COMMAND as SELECT_COMMAND
from wv.curate.select import SELECTION, score_schemas, shard_frame
from wv.curate.select_core import tiebreak
from wv.errors import WvError, damaged_root, first_line
from wv.options import opt
from wv.parallel import Workers
from wv.progress import bar_options
from wv.runtime import check_seed
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.read import read_range
from wv.shards.root import Root
from wv.shards.runrecord import changed

FORMAT = "wv-audit/1"
COMMAND = "audit"
STATES = ("dropped", "protected", "kept")  # protected: a rule matched, class protection kept it
REDUCE_EVERY = 64
MAX_CARDS, MAX_BINS = 1_000_000, 10_000  # a report is read by a person
TEXT_LIMIT = 600  # characters of a description shown on a card
LIST_LIMIT = 30  # keywords or tags shown on a card


@dataclass(frozen=True)
class AuditOptions:
    per_class: int = opt(24, "Dropped images shown per class.")
    kept_per_class: int = opt(8, "Kept (and, separately, protected) images shown per class, for contrast.")
    overview: int = opt(36, "Dropped images in the index page's mosaic.")
    thumb_size: int = opt(160, "Longest side of a thumbnail, in pixels.")
    bins: int = opt(40, "Bins of each score histogram.")
    split: str = opt("train", choices=("train", "val"))
    selection: str = opt(SELECTION, "The selection sidecar to report on (wv select --name).")
    seed: int = opt(0, "Which samples each class page shows (a seeded random pick).")

    def validate(self) -> None:
        if not (1 <= self.per_class <= MAX_CARDS and 0 <= self.kept_per_class <= MAX_CARDS and 0 <= self.overview <= MAX_CARDS):
            raise WvError(f"--per-class must be 1 to {MAX_CARDS:,}, --kept-per-class and --overview 0 to {MAX_CARDS:,}")
        if not 32 <= self.thumb_size <= 512:
            raise WvError("--thumb-size must be between 32 and 512 pixels")
        if not 1 <= self.bins <= MAX_BINS:
            raise WvError(f"--bins must be 1 to {MAX_BINS:,}")
        check_seed(self.seed)

    def limit(self, state: str) -> int:
        return self.per_class if state == "dropped" else self.kept_per_class


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
    """"score.column" -> how a card shows it: number, bool, string or list (of strings); others are left out."""
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
    state = (pl.when(~pl.col("keep")).then(pl.lit("dropped"))
             .when(pl.col("matched").is_not_null()).then(pl.lit("protected")).otherwise(pl.lit("kept")))
    return frame.hstack(chosen.drop("__key__")).with_columns(state.alias("state"), pl.int_range(pl.len(), dtype=pl.Int64).alias("index"))


def selected_frame(root: Root, shard: str, selection: str, columns: list, **kw) -> pl.DataFrame:
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


def tally_all(pool, jobs: list[TallyJob], progress: bool):
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


# -- pass 2: the cards of the samples shown -----------------------------------------------------------------
@dataclass(frozen=True)
class CardJob:
    root: str
    shard: str
    selection: str
    columns: tuple  # score columns shown on the cards
    rows: tuple  # ((index, offset, length), ...) of the samples shown, from the manifest
    out: str
    thumb_size: int


def cards_shard(job: CardJob) -> pl.DataFrame:
    root = Root(job.root)
    meta = ("label", "source", "title", "description", "tags")
    frame = selected_frame(root, job.shard, job.selection, list(job.columns), meta_columns=meta)
    rows = pl.DataFrame(list(job.rows), schema={"index": pl.Int64, "offset": pl.Int64, "length": pl.Int64}, orient="row")
    frame = frame.join(rows, on="index", how="inner")
    thumbs = [write_thumb(root.shard_path(job.shard), Path(job.out), key, label, offset, length, job.thumb_size)
              for key, label, offset, length in frame.select("__key__", "meta.label", "offset", "length").iter_rows()]
    return frame.with_columns(
        pl.Series("thumb", thumbs, dtype=pl.String),
        pl.col("meta.description").str.slice(0, TEXT_LIMIT),
        pl.col("meta.tags").list.head(LIST_LIMIT),
        *[pl.col(c).list.head(LIST_LIMIT) for c in job.columns if isinstance(frame.schema[c], pl.List)],
    ).drop("offset", "length", "keep")


def thumb_name(label: int, key: str) -> str:
    return f"thumbs/{label:05d}/{key}.jpg"


def write_thumb(shard_path: Path, out: Path, key: str, label: int, offset: int, length: int, size: int) -> str | None:
    """Reads one sample's byte range and writes its thumbnail (kept from an earlier run when present)."""
    name = thumb_name(label, key)
    path = out / name
    if path.is_file() and path.stat().st_size > 0:
        return name
    try:
        data = read_range(shard_path, offset, length)["jpg"]
    except (OSError, KeyError, ValueError, tarfile.TarError) as error:
        raise WvError(f"sample {key} is not at its byte range in {shard_path} ({first_line(error)}); run `wv shard verify`") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much cheaper for big images
        image = image.convert("RGB")
        image.thumbnail((size, size))
    except (OSError, ValueError):
        return None  # unreadable: the card says so (wv shard verify names the damage)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    write_bytes(path, buffer.getvalue())
    return name


def cards_all(pool, root: Root, picks: pl.DataFrame, base: dict, progress: bool) -> pl.DataFrame:
    wanted = root.manifest(base["split"]).select("__key__", "offset", "length").filter(pl.col("__key__").is_in(picks["__key__"].implode()))
    try:
        located = wanted.collect(engine="streaming").join(picks, on="__key__").sort("shard", "index")
    except (pl.exceptions.PolarsError, OSError) as error:
        raise damaged_root(root.manifest_path, error) from None
    jobs = [CardJob(shard=shard[0], rows=tuple(group.select("index", "offset", "length").iter_rows()),
                    **{k: v for k, v in base.items() if k != "split"})
            for shard, group in located.group_by("shard", maintain_order=True)]
    parts = list(tqdm(pool.map(cards_shard, jobs), total=len(jobs), desc="audit: thumbnails", **bar_options(progress)))
    cards = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    return cards.join(picks.select("__key__", "tie"), on="__key__") if cards.height else cards


# -- the figures: pure functions of the counts and the cards shown ------------------------------------------
def class_table(counts: pl.DataFrame, rules: list[str]) -> pl.DataFrame:
    """label, samples, dropped, protected, d0..dN (dropped per rule), rate; sorted by drop rate, then label."""
    per_rule = [pl.col("len").filter((pl.col("state") == "dropped") & (pl.col("matched") == text)).sum().alias(f"d{i}")
                for i, text in enumerate(rules)]
    table = counts.group_by("label").agg(
        pl.col("len").sum().alias("samples"),
        pl.col("len").filter(pl.col("state") == "dropped").sum().alias("dropped"),
        pl.col("len").filter(pl.col("state") == "protected").sum().alias("protected"),
        *per_rule,
    )
    return table.with_columns((pl.col("dropped") / pl.col("samples")).alias("rate")).sort(["rate", "label"], descending=[True, False])


def report_figures(counts: pl.DataFrame, rules: list[str], cards: pl.DataFrame) -> dict:
    """The numbers of report.json and the index page, from the counts (label, source, state, matched, len)."""
    total = int(counts["len"].sum())
    state = {s: int(counts.filter(pl.col("state") == s)["len"].sum()) for s in STATES}
    per_rule = [{"rule": text,
                 "dropped": int(counts.filter((pl.col("state") == "dropped") & (pl.col("matched") == text))["len"].sum()),
                 "protected": int(counts.filter((pl.col("state") == "protected") & (pl.col("matched") == text))["len"].sum())}
                for text in rules]
    by_source = counts.group_by("source").agg(pl.col("len").sum().alias("samples"),
                                              pl.col("len").filter(pl.col("state") == "dropped").sum().alias("dropped"))
    sources = {row["source"]: {"samples": row["samples"], "dropped": row["dropped"]} for row in by_source.sort("source").iter_rows(named=True)}
    table = class_table(counts, rules)
    shown = dict(cards.group_by("state").len().iter_rows()) if cards.height else {}
    return {
        "samples": total, "kept": total - state["dropped"], "dropped": state["dropped"], "protected": state["protected"],
        "rules": per_rule, "sources": sources, "classes": table.height,
        "classes_with_drops": table.filter(pl.col("dropped") > 0).height,
        "thumbnails": {state: shown[state] for state in STATES if state in shown},  # in STATES order: report.json is stable
    }


# -- the whole report -----------------------------------------------------------------------------------------
def write_report(root, out=None, options: AuditOptions | None = None, workers: int = 1, executor: str = "local",
                 ray_address: str | None = None, progress: bool = True, **option_values) -> dict:
    """Write the audit report of ROOT's selection to `out` (default ROOT/reports/audit); returns its figures.

    `option_values` are AuditOptions fields (per_class, kept_per_class, overview, thumb_size, bins,
    split, selection, seed), for callers that do not build an AuditOptions.
    """
    root = Root(root)
    options = options or AuditOptions(**option_values)
    options.validate()
    root.info()  # a root, checked before anything is written
    out = Path(out) if out else root.reports_dir / "audit"
    if out.exists() and not out.is_dir():
        raise WvError(f"--out {out} is a file, not a folder; choose a folder for the report")
    shards = root.shard_names(options.split)
    if not shards:
        raise WvError(f"{root.path} has no {options.split} shards")
    texts = selection_rules(root, options.selection)
    check_selection(root, options.selection, options.split)
    inputs = read_inputs(root, options, shards, texts)
    with writing(root, COMMAND):
        prepare_out(out, options)
        claim_out(out, options)
        return audit_into(root, out, options, shards, texts, inputs, workers, executor, ray_address, progress)


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


def audit_into(root: Root, out: Path, options: AuditOptions, shards: list, texts: list, inputs: Inputs, workers, executor,
               ray_address, progress: bool) -> dict:
    """The two passes and the pages, into `out` (prepared and claimed)."""
    schemas, shown, specs = inputs.schemas, inputs.shown, inputs.specs
    limits = tuple(options.limit(state) for state in STATES)
    hist_columns = tuple(dict.fromkeys(spec.column for spec in specs))
    with Workers(workers, executor, ray_address) as pool:
        jobs = [TallyJob(str(root.path.absolute()), s, options.selection, tuple(texts), hist_columns, tuple(specs), limits, options.seed) for s in shards]
        counts, hists, picks = tally_all(pool, jobs, progress)
        base = {"root": str(root.path.absolute()), "selection": options.selection, "columns": tuple(shown), "out": str(out.absolute()),
                "thumb_size": options.thumb_size, "split": options.split}
        cards = cards_all(pool, root, picks, base, progress)
    table, figures = class_table(counts, texts), report_figures(counts, texts, cards)
    report = pages.Report(root=root, out=out, rules=texts, figures=figures, table=table, histograms=list(zip(specs, hists)),
                          cards=cards, shown=shown, classes=root.classes(), options=options, schemas=schemas)
    from wv.curate.audit_duplicates import PAGE, duplicate_scores

    with_duplicates = bool(duplicate_scores(root, shards))
    report.links = [{"href": PAGE, "text": "Duplicates and leaks"}] if with_duplicates else []
    written = report.write()
    remove_stale(out, cards, written)
    duplicates = duplicates_page(root, out, options) if with_duplicates else None  # after remove_stale: its thumbnails stay
    figures = {**figures, "paths": {"report": str(out / "index.html"), "folder": str(out),
                                    **({"duplicates": str(out / duplicates)} if duplicates else {})}}
    write_json(out / "report.json", {"format": FORMAT, "options": asdict(options), "complete": True, **figures})
    return figures


def duplicates_page(root: Root, out: Path, options: AuditOptions) -> str | None:
    """OUT/duplicates.html when the root has a `wv score duplicates` sidecar (wv.curate.audit_duplicates)."""
    from wv.curate.audit_duplicates import write_duplicates_page

    def thumb(row: dict) -> str | None:
        return write_thumb(root.shard_path(row["shard"]), out, row["__key__"], row["label"], row["offset"], row["length"], options.thumb_size)

    return write_duplicates_page(root, out, options.split, options.thumb_size, thumb)


def prepare_out(out: Path, options: AuditOptions) -> None:
    """A new folder, or an earlier audit report (its thumbnails are reused when the size is the same)."""
    if not out.exists() or not any(out.iterdir()):
        return
    previous = out / "report.json"
    if not previous.is_file():
        raise WvError(f"{out} exists and is not an audit report; choose another --out")
    try:
        earlier = json.loads(previous.read_text())
    except json.JSONDecodeError:
        earlier = {}
    if earlier.get("format") != FORMAT:
        raise WvError(f"{out} exists and is not an audit report; choose another --out")
    if "thumb_size" in changed(earlier.get("options", {}), asdict(options)) and (out / "thumbs").is_dir():
        shutil.rmtree(out / "thumbs")  # the other options change pages only: thumbnails of the same size are reused


def claim_out(out: Path, options: AuditOptions) -> None:
    """Mark the folder as an audit report before writing into it, so an interrupted run can resume."""
    previous = out / "report.json"
    earlier = json.loads(previous.read_text()) if previous.is_file() else {}
    write_json(previous, {**earlier, "format": FORMAT, "options": asdict(options), "complete": False})


def remove_stale(out: Path, cards: pl.DataFrame, pages_written: set) -> None:
    """Thumbnails and class pages an earlier report had and this one does not."""
    wanted = set(cards["thumb"].drop_nulls().to_list()) if cards.height else set()
    for path in (out / "thumbs").glob("*/*.jpg"):
        if path.relative_to(out).as_posix() not in wanted:
            path.unlink()
    for path in (out / "classes").glob("*.html"):
        if path.relative_to(out).as_posix() not in pages_written:
            path.unlink()
