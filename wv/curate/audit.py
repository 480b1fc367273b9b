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
What the report reads and the first pass live in wv.curate.audit_read; the pages in audit_assets.
"""

import io
import json
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
from PIL import Image
from tqdm import tqdm

from wv.atomic import write_bytes, write_json
from wv.curate import audit_assets as pages
from wv.curate import audit_relabel
from wv.curate.audit_read import STATES, Inputs, TallyJob, check_selection, read_inputs, selected_frame, selection_rules, tally_all
from wv.curate.options import AuditOptions
from wv.errors import WvError, damaged_root, first_line
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards.lock import writing
from wv.shards.read import read_range
from wv.shards.root import Root
from wv.shards.runrecord import changed

FORMAT = "wv-audit/1"
COMMAND = "audit"
TEXT_LIMIT = 600  # characters of a description shown on a card
LIST_LIMIT = 30  # keywords or tags shown on a card


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
    thumbs = [
        write_thumb(root.shard_path(job.shard), Path(job.out), key, label, offset, length, job.thumb_size)
        for key, label, offset, length in frame.select("__key__", "meta.label", "offset", "length").iter_rows()
    ]
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
    jobs = [
        CardJob(shard=shard[0], rows=tuple(group.select("index", "offset", "length").iter_rows()), **{k: v for k, v in base.items() if k != "split"})
        for shard, group in located.group_by("shard", maintain_order=True)
    ]
    parts = list(tqdm(pool.map(cards_shard, jobs), total=len(jobs), desc="audit: thumbnails", **bar_options(progress)))
    cards = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    return cards.join(picks.select("__key__", "tie"), on="__key__") if cards.height else cards


# -- the figures: pure functions of the counts and the cards shown ------------------------------------------
def class_table(counts: pl.DataFrame, rules: list[str]) -> pl.DataFrame:
    """label, samples, dropped, protected, d0..dN (dropped per rule), rate; sorted by drop rate, then label."""
    per_rule = [pl.col("len").filter((pl.col("state") == "dropped") & (pl.col("matched") == text)).sum().alias(f"d{i}") for i, text in enumerate(rules)]
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
    per_rule = [
        {
            "rule": text,
            "dropped": int(counts.filter((pl.col("state") == "dropped") & (pl.col("matched") == text))["len"].sum()),
            "protected": int(counts.filter((pl.col("state") == "protected") & (pl.col("matched") == text))["len"].sum()),
        }
        for text in rules
    ]
    by_source = counts.group_by("source").agg(pl.col("len").sum().alias("samples"), pl.col("len").filter(pl.col("state") == "dropped").sum().alias("dropped"))
    sources = {row["source"]: {"samples": row["samples"], "dropped": row["dropped"]} for row in by_source.sort("source").iter_rows(named=True)}
    table = class_table(counts, rules)
    shown = dict(cards.group_by("state").len().iter_rows()) if cards.height else {}
    return {
        "samples": total,
        "kept": total - state["dropped"],
        "dropped": state["dropped"],
        "protected": state["protected"],
        "rules": per_rule,
        "sources": sources,
        "classes": table.height,
        "classes_with_drops": table.filter(pl.col("dropped") > 0).height,
        "thumbnails": {state: shown[state] for state in STATES if state in shown},  # in STATES order: report.json is stable
    }


# -- the whole report -----------------------------------------------------------------------------------------
def write_report(
    root: str | Path,
    out: str | Path | None = None,
    options: AuditOptions | None = None,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    **option_values: object,
) -> dict:
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
    relabelled = audit_relabel.relabel_name(root, options.relabel, shards)
    with writing(root, COMMAND):
        prepare_out(out, options)
        claim_out(out, options)
        return audit_into(root, out, options, shards, texts, inputs, workers, executor, ray_address, progress, relabelled)


def audit_into(root: Root, out: Path, options: AuditOptions, shards: list, texts: list, inputs: Inputs, workers, executor, ray_address, progress: bool, relabel: str | None = None) -> dict:
    """The two passes and the pages, into `out` (prepared and claimed)."""
    schemas, shown, specs = inputs.schemas, inputs.shown, inputs.specs
    limits = tuple(options.limit(state) for state in STATES)
    hist_columns = tuple(dict.fromkeys(spec.column for spec in specs))
    with Workers(workers, executor, ray_address) as pool:
        jobs = [TallyJob(str(root.path.absolute()), s, options.selection, tuple(texts), hist_columns, tuple(specs), limits, options.seed) for s in shards]
        counts, hists, picks = tally_all(pool, jobs, progress)
        base = {"root": str(root.path.absolute()), "selection": options.selection, "columns": tuple(shown), "out": str(out.absolute()), "thumb_size": options.thumb_size, "split": options.split}
        cards = cards_all(pool, root, picks, base, progress)
    table, figures = class_table(counts, texts), report_figures(counts, texts, cards)
    relabelled = audit_relabel.tally(root, relabel, shards, options.per_class, options.seed) if relabel else None
    report = pages.Report(
        root=root,
        out=out,
        rules=texts,
        figures=figures,
        table=table,
        histograms=list(zip(specs, hists)),
        cards=cards,
        shown=shown,
        classes=root.classes(),
        options=options,
        schemas=schemas,
        relabel=audit_relabel.figures(relabelled),
    )
    from wv.curate.audit_duplicates import PAGE, duplicate_scores

    with_duplicates = bool(duplicate_scores(root, shards))
    report.links = [{"href": PAGE, "text": "Duplicates and leaks"}] if with_duplicates else []
    written = report.write()
    remove_stale(out, cards, written)
    duplicates = duplicates_page(root, out, options) if with_duplicates else None  # after remove_stale: its thumbnails stay
    figures = {**figures, "paths": {"report": str(out / "index.html"), "folder": str(out), **({"duplicates": str(out / duplicates)} if duplicates else {})}}
    if relabelled:
        picks = audit_relabel.write_thumbs(root, relabelled, options.split, out, options.thumb_size)
        audit_relabel.write_page(root, relabelled, picks, out)
        figures.update(relabel=audit_relabel.figures(relabelled), paths={**figures["paths"], "relabel": str(out / audit_relabel.PAGE)})
    elif (out / audit_relabel.PAGE).is_file():
        (out / audit_relabel.PAGE).unlink()  # an earlier report's
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
