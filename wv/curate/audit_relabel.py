"""The audit report's relabel page: the samples `wv relabel` gave another class, the web label beside
the new one, with their images (`wv audit --relabel NAME`; by default scores/pseudo when `wv relabel`
made it).

    OUT/relabel.html   how many samples got a pseudo-label and how many another class; the most
                       frequent (web label -> new label) pairs; per new class, up to --per-class of
                       its changed samples (a seeded pick: the smallest tie hashes of their keys)

One pass over the split's pseudo-label sidecars keeps only the changed rows' counts and picks; then only
the picked samples' images are read (their manifest byte ranges) into thumbnails under OUT/thumbs/.
"""

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from wv.curate import audit_assets as pages
from wv.curate.select_core import tiebreak
from wv.errors import WvError, damaged_root, first_line
from wv.shards import sidecars
from wv.shards.root import Root

RELABEL_COMMAND = "relabel"
COLUMNS = ["label", "predicted", "probability", "p_label", "changed"]
PAGE = "relabel.html"
PAIRS_SHOWN = 30


def relabel_name(root: Root, option: str, shards: list) -> str | None:
    """The pseudo-label sidecar to show: none; auto (scores/pseudo when `wv relabel` made it, for every
    shard); or a NAME, which must be a complete `wv relabel` output."""
    if option == "none":
        return None
    name = "pseudo" if option == "auto" else option
    record = sidecars.run_record(root, "scores", name, RELABEL_COMMAND)
    found = record.read()
    if option == "auto" and (found is None or found.get("command") != RELABEL_COMMAND):
        return None
    if found is None:
        raise WvError(f"{root.path} has no pseudo-labels {name!r}; run `wv relabel {root.path} --name {name}` first")
    record.check_owner()
    missing = [s for s in shards if not root.score_path(name, s).is_file()]
    if missing:
        if option == "auto":
            return None
        raise WvError(f"the pseudo-labels {name!r} are incomplete (shard {missing[0]}); re-run the same `wv relabel` to finish them")
    return name


@dataclass
class Relabelled:
    name: str
    counts: dict  # samples, pseudo_labelled, changed
    pairs: pl.DataFrame  # web, new, n: changed samples per pair of classes, most frequent first
    picks: pl.DataFrame  # the samples shown: __key__, shard, web, new, probability, p_label, tie


def tally(root: Root, name: str, shards: list, per_class: int, seed: int) -> Relabelled:
    """Counts and picks over every shard, holding only the changed rows of one shard at a time."""
    counts = {"samples": 0, "pseudo_labelled": 0, "changed": 0}
    pairs, picks = [], None
    for shard in shards:
        keys = sidecars.shard_keys(root, shard)
        try:
            web = pl.read_parquet(root.meta_path(shard), columns=["label"])["label"]
            frame = sidecars.read_score(root, name, shard, COLUMNS, keys=keys)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise WvError(f"the pseudo-labels of {shard} cannot be read ({first_line(error)}); re-run `wv relabel`") from None
        counts["samples"] += frame.height
        counts["pseudo_labelled"] += int(frame["label"].is_not_null().sum())
        changed = frame.with_columns(web.alias("web")).filter(pl.col("changed"))
        counts["changed"] += changed.height
        if not changed.height:
            continue
        pairs.append(changed.group_by("web", pl.col("label").alias("new")).len("n"))
        ties = pl.Series("tie", [tiebreak(seed, k) for k in changed["__key__"]], dtype=pl.UInt64)
        mine = changed.select("__key__", pl.lit(shard).alias("shard"), "web", pl.col("label").alias("new"), "probability", "p_label").hstack([ties])
        picks = smallest(pl.concat([picks, mine]) if picks is not None else mine, per_class)
    pair_table = (
        pl.concat(pairs).group_by("web", "new").agg(pl.col("n").sum()).sort(["n", "web", "new"], descending=[True, False, False])
        if pairs
        else pl.DataFrame(schema={"web": pl.Int32, "new": pl.Int32, "n": pl.UInt32})
    )
    return Relabelled(name, counts, pair_table, picks if picks is not None else pl.DataFrame())


def smallest(picks: pl.DataFrame, per_class: int) -> pl.DataFrame:
    return picks.filter(pl.col("tie").rank("ordinal").over("new") <= per_class)


def write_thumbs(root: Root, relabelled: Relabelled, split: str, out: Path, thumb_size: int) -> pl.DataFrame:
    """The picks with a `thumb` column (None: the image cannot be decoded)."""
    from wv.curate.audit import write_thumb

    picks = relabelled.picks
    if not picks.height:
        return picks
    try:
        located = root.manifest(split).select("__key__", "offset", "length").filter(pl.col("__key__").is_in(picks["__key__"].implode())).collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as error:
        raise damaged_root(root.manifest_path, error) from None
    picks = picks.join(located, on="__key__").sort("shard", "tie")
    thumbs = [
        write_thumb(root.shard_path(shard), out, key, web, offset, length, thumb_size) for key, shard, web, offset, length in picks.select("__key__", "shard", "web", "offset", "length").iter_rows()
    ]
    return picks.with_columns(pl.Series("thumb", thumbs, dtype=pl.String)).drop("offset", "length")


def write_page(root: Root, relabelled: Relabelled, picks: pl.DataFrame, out: Path) -> str:
    names = {c["label"]: c["names"].split(",")[0] for c in root.classes()}
    name_of = lambda label: names.get(label, "") if label is not None else ""  # noqa: E731
    groups = []
    for (new,), group in sorted(picks.partition_by("new", as_dict=True).items()) if picks.height else []:
        cards = [
            {"key": row["__key__"], "thumb": row["thumb"], "web": row["web"], "web_name": name_of(row["web"]), "probability": pages.fmt(row["probability"]), "p_label": pages.fmt(row["p_label"])}
            for row in group.sort("tie").iter_rows(named=True)
        ]
        groups.append({"label": new, "name": name_of(new), "cards": cards})
    pairs = [{"web": w, "web_name": name_of(w), "new": n, "new_name": name_of(n), "n": count} for w, n, count in relabelled.pairs.head(PAIRS_SHOWN).iter_rows()]
    html = pages.render(
        "relabel.html.j2",
        title=f"relabelled · wv audit · {root.path.name}",
        root=str(root.path),
        name=relabelled.name,
        counts=relabelled.counts,
        pairs=pairs,
        more_pairs=max(0, relabelled.pairs.height - PAIRS_SHOWN),
        groups=groups,
    )
    pages.write_page(out / PAGE, html)
    return PAGE


def figures(relabelled: Relabelled | None) -> dict | None:
    """What report.json and the index page say about the relabelled samples."""
    if relabelled is None:
        return None
    return {"name": relabelled.name, **relabelled.counts, "page": PAGE, "shown": relabelled.picks.height, "pairs": relabelled.pairs.height}
