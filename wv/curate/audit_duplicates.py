"""The audit report's duplicates page (OUT/duplicates.html): the largest duplicate groups side by side
and the leak list (a train image beside its copy in val or in the --against set), from the sidecar
of `wv score duplicates`. Self-contained: wv.curate.audit calls `write_duplicates_page` once, after
the report's own pages, when the root has such a sidecar for the split."""

import polars as pl

from wv.curate.audit_assets import render, write_page
from wv.shards import sidecars
from wv.shards.root import Root

PAGE = "duplicates.html"
SCORE_COMMAND = "score duplicates"


def duplicate_scores(root: Root, shards: list[str]) -> list[str]:
    """The complete duplicates sidecars of the root (made by `wv score duplicates`)."""
    names = []
    for name in sidecars.score_names(root):
        record = sidecars.run_record(root, "scores", name, SCORE_COMMAND).read() or {}
        if record.get("command") == SCORE_COMMAND and all(root.score_path(name, s).is_file() for s in shards):
            names.append(name)
    return names


def write_duplicates_page(root: Root, out, split: str, thumb_size: int, thumb, groups: int = 30, leaks: int = 60) -> str | None:
    """Write OUT/duplicates.html for the first duplicates sidecar; returns its relative path (None: no sidecar).
    `thumb(row) -> relative thumbnail path or None` makes a thumbnail from a manifest row."""
    shards = root.shard_names(split)
    names = duplicate_scores(root, shards) if shards else []
    if not names:
        return None
    name = names[0]
    frame = sidecars.read_scores(root, name, split=split).collect()
    grouped = frame.filter(pl.col("near_group").is_not_null()).sort("group_size", "near_group", "representative", "__key__", descending=[True, False, True, False])
    heads = grouped["near_group"].unique(maintain_order=True).head(groups)
    shown = grouped.filter(pl.col("near_group").is_in(heads.implode()))
    leaked = frame.filter(pl.col("leaks")).sort("other_similarity", descending=True, nulls_last=True).head(leaks)
    wanted = set(shown["__key__"]) | set(leaked["__key__"]) | set(leaked["other_key"].drop_nulls())
    manifest = root.manifest().select("__key__", "shard", "offset", "length", "label", "width", "height")
    rows = manifest.filter(pl.col("__key__").is_in(sorted(wanted))).collect()
    thumbs = {r["__key__"]: {**r, "thumb": thumb(r)} for r in rows.iter_rows(named=True)}
    view = {
        "title": f"duplicates · wv audit · {root.path.name}",
        "name": name,
        "split": split,
        "groups": [{"head": head, "members": [card(thumbs, r) for r in shown.filter(pl.col("near_group") == head).iter_rows(named=True)]} for head in heads.to_list()],
        "group_total": grouped["near_group"].n_unique(),
        "leak_total": int(frame["leaks"].sum()),
        "leaks": [
            {
                "mine": card(thumbs, r),
                "other": card(thumbs, {"__key__": r["other_key"]}) if r["other_key"] else None,
                "similarity": r["other_similarity"],
                "exact": r["other_exact_key"],
                "against": r["against_key"],
                "against_similarity": r["against_similarity"],
            }
            for r in leaked.iter_rows(named=True)
        ],
    }
    write_page(out / PAGE, render("duplicates.html.j2", **view))
    return PAGE


def card(thumbs: dict, row: dict) -> dict:
    found = thumbs.get(row["__key__"], {})
    size = f"{found['width']}x{found['height']}" if found.get("width") else ""
    return {"key": row["__key__"], "thumb": found.get("thumb"), "size": size, "kept": row.get("representative"), "exact": row.get("exact_group")}
