"""`wv shard info`: what a dataset root holds, per split, source and class."""

from pathlib import Path

import polars as pl

from wv.errors import WvError, damaged_root
from wv.shards.root import Root


def describe(root: str | Path) -> dict:
    root = Root(root)
    info = root.info()
    shards = root.shards()
    names = {c["label"]: c["names"] for c in info["classes"]}
    per_split, per_source, per_class, meta = manifest_counts(root)
    rejects = root.rejects()
    reasons = rejects.group_by("split", "reason").len().sort("len", descending=True) if rejects.height else pl.DataFrame()
    return {
        "root": str(root.path),
        "classes": len(info["classes"]),
        "source": info.get("source", {}),
        "splits": {
            row["split"]: {
                "samples": row["samples"],
                "image_bytes": row["image_bytes"],
                "shards": shards.filter(pl.col("split") == row["split"]).height,
                "shard_bytes": int(shards.filter(pl.col("split") == row["split"])["bytes"].sum()),
                "sources": {r["source"]: r["len"] for r in per_source.filter(pl.col("split") == row["split"]).iter_rows(named=True)},
                "classes_present": per_class.filter(pl.col("split") == row["split"]).height,
                "per_class": [{"label": r["label"], "names": names.get(r["label"], ""), "samples": r["len"]} for r in per_class.filter(pl.col("split") == row["split"]).iter_rows(named=True)],
            }
            for row in per_split.sort("split").iter_rows(named=True)
        },
        "meta": {r["meta"]: r["len"] for r in meta.iter_rows(named=True)},
        "rejects": [{"split": r["split"], "reason": r["reason"], "count": r["len"]} for r in reasons.iter_rows(named=True)],
    }


def manifest_counts(root: Root) -> tuple[pl.DataFrame, ...]:
    """Samples and image bytes per split; samples per split and source, per split and class, per meta state."""
    manifest = root.manifest()
    try:
        return (
            manifest.group_by("split").agg(pl.len().alias("samples"), pl.col("bytes").sum().alias("image_bytes")).collect(),
            manifest.group_by("split", "source").len().sort("split", "source").collect(),
            manifest.group_by("split", "label").len().sort("split", "len", "label", descending=[False, True, False]).collect(),
            manifest.group_by("meta").len().sort("len", descending=True).collect(),
        )
    except (pl.exceptions.PolarsError, OSError) as error:
        raise damaged_root(root.manifest_path, error) from None


def check_show_classes(show_classes: int) -> None:
    if show_classes < 0:
        raise WvError(f"--classes is how many classes to list, 0 or more (got {show_classes})")


def summary_lines(result: dict, show_classes: int) -> list[str]:
    lines = [f"{result['classes']} classes; source {result['source'].get('root', '?')} (WebVision {result['source'].get('webvision_version', '?')})"]
    for split, s in result["splits"].items():
        sources = ", ".join(f"{k} {v}" for k, v in s["sources"].items())
        lines.append(f"{split}: {s['samples']} samples in {s['shards']} shards ({s['shard_bytes'] / 1e6:.1f} MB); {sources}")
        per_class = s["per_class"]
        lines.append(f"  {s['classes_present']} classes present; samples per class {per_class[-1]['samples']}..{per_class[0]['samples']}")
        shown = per_class if len(per_class) <= 2 * show_classes else per_class[:show_classes] + per_class[len(per_class) - show_classes :]
        for c in shown:
            lines.append(f"    {c['label']:>5} {c['samples']:>8}  {c['names'][:60]}")
    lines.append("meta: " + ", ".join(f"{k} {v}" for k, v in result["meta"].items()))
    for r in result["rejects"]:
        lines.append(f"rejected ({r['split']}): {r['count']} {r['reason']}")
    return lines
