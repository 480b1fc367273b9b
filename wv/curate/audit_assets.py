"""The audit report's pages, rendered from jinja2 templates with autoescape.

wv/curate/templates/  base.html.j2 (the page: CSP, inline CSS), index.html.j2, class.html.j2, and
                      parts.html.j2 (macros: a card, a histogram)
wv/curate/static/     report.css, index.js, class.js: inlined in every page (no network, no file
                      besides the thumbnails: the folder works from file:// wherever it is moved)

Everything from the data (web titles, descriptions, keywords, class names) reaches the HTML through
the templates' autoescape or, in the browser, textContent; the index's class table travels as JSON
(`tojson`) in a <script type=application/json>. The numbers come from wv.curate.audit
(`report_figures`, `class_table`); this module only lays them out: the `*_view` functions turn them
into plain values for the templates.
"""

import dataclasses
import math
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import jinja2
import polars as pl
from markupsafe import Markup

from wv.atomic import atomic_path
from wv.curate.rules import compile_rules

PALETTE = ("#d1495b", "#7b4fa8", "#e39b1b", "#00798c", "#8f5b2d", "#3d6fd8", "#2e8b57", "#c2185b")
KEPT, OTHER = "#b7c3d3", "#f1c9a5"
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
STATE_TITLES = {"dropped": "Dropped", "protected": "Protected — matched a rule, kept so the class keeps enough samples", "kept": "Kept, for contrast"}
KEYWORDS_SHOWN, TAGS_SHOWN = 30, 20


def color(rule: int) -> str:
    return PALETTE[rule % len(PALETTE)]


def fmt(value: object) -> str:
    """A score as a card shows it: 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_data(value) -> str:
    """A score as the sort reads it (data-sJ): the full float, empty when there is none."""
    if value is None or isinstance(value, (list, str)) or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(float(value))


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


@cache
def asset(name: str) -> Markup:
    """A file of wv/curate/static, to inline in a <style> or <script> (ours, not data: not escaped)."""
    return Markup(resources.files("wv.curate").joinpath("static", name).read_text(encoding="utf-8"))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("wv.curate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=lambda value: "" if value is None else value,
    )
    env.filters["num"] = lambda n: f"{n:,}"
    env.globals.update(asset=asset, pct=pct, csp=CSP, kept_color=KEPT, other_color=OTHER)
    return env


def render(template: str, **view) -> str:
    return environment().get_template(template).render(**view)


def write_page(path: Path, html_text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(html_text, encoding="utf-8")


def class_page(label: int) -> str:
    return f"classes/{label:05d}.html"


@dataclass
class Report:
    root: object  # wv.shards.root.Root
    out: Path
    rules: list  # rule texts, in the selection's order
    figures: dict  # wv.curate.audit.report_figures
    table: pl.DataFrame  # wv.curate.audit.class_table
    histograms: list  # [(Histogram, 4 x bins counts: kept, protected, dropped by the rule, dropped by another)]
    cards: pl.DataFrame  # one row per sample shown
    shown: dict  # "score.column" -> number | bool | string | list
    classes: list  # wv.json classes
    options: object  # AuditOptions
    schemas: dict
    relabel: dict | None = None  # wv.curate.audit_relabel.figures: the index links to its page
    links: list = dataclasses.field(default_factory=list)  # [{href, text}]: other pages of the report (e.g. duplicates.html)

    def write(self) -> set:
        """Writes index.html and a page per class; returns the class pages written (relative paths)."""
        names = {c["label"]: c for c in self.classes}
        labels = sorted(self.table["label"].to_list())
        by_label = self.cards.partition_by("meta.label", as_dict=True) if self.cards.height else {}
        rows = {row["label"]: row for row in self.table.iter_rows(named=True)}
        written = set()
        for position, label in enumerate(labels):
            neighbours = (labels[position - 1] if position else None, labels[position + 1] if position + 1 < len(labels) else None)
            cls = names.get(label, {"label": label, "names": "", "synset": ""})
            view = self.class_view(cls, rows[label], by_label.get((label,), pl.DataFrame()), neighbours)
            write_page(self.out / class_page(label), render("class.html.j2", **view))
            written.add(class_page(label))
        write_page(self.out / "index.html", render("index.html.j2", **self.index_view(names)))
        return written

    # -- index.html ------------------------------------------------------------------------------
    def index_view(self, names: dict) -> dict:
        f = self.figures
        stats = [
            ("samples", f["samples"], ""),
            ("kept", f["kept"], pct(f["kept"], f["samples"])),
            ("dropped", f["dropped"], pct(f["dropped"], f["samples"])),
            ("protected", f["protected"], "matched a rule, kept to protect a small class"),
            ("classes with drops", f["classes_with_drops"], f"of {f['classes']:,}"),
        ]
        rules = [
            {
                "text": text,
                "color": color(i),
                "dropped": r["dropped"],
                "protected": r["protected"],
                "histograms": [histogram_view(spec, counts, color(i)) for spec, counts in self.histograms if spec.rule == i],
            }
            for i, (text, r) in enumerate(zip(self.rules, f["rules"]))
        ]
        sources = [{"name": name, **s, "width": f"{100 * s['dropped'] / max(1, s['samples']):.2f}"} for name, s in f["sources"].items()]
        data = {
            "rules": self.rules,
            "colors": [color(i) for i in range(len(self.rules))],
            "classes": [
                [
                    r["label"],
                    names.get(r["label"], {}).get("names", ""),
                    names.get(r["label"], {}).get("synset", ""),
                    r["samples"],
                    r["dropped"],
                    r["protected"],
                    [r[f"d{i}"] for i in range(len(self.rules))],
                ]
                for r in self.table.iter_rows(named=True)
            ],
        }
        return {
            "title": f"wv audit · {self.root.path.name}",
            "root": str(self.root.path),
            "options": self.options,
            "figures": f,
            "stats": [{"name": k, "kind": k.split()[0], "value": v, "extra": x} for k, v, x in stats],
            "rules": rules,
            "tiles": self.mosaic_view(names),
            "sources": sources,
            "data": data,
            "relabel": self.relabel,
            "links": self.links,
        }

    def mosaic_view(self, names: dict) -> list:
        if not self.cards.height or not self.options.overview:
            return []
        dropped = self.cards.filter(pl.col("state") == "dropped").sort("tie").head(self.options.overview)
        tiles = []
        for card in dropped.iter_rows(named=True):
            label, name = card["meta.label"], names.get(card["meta.label"], {}).get("names", "")
            tiles.append(
                {
                    "href": class_page(label),
                    "label": label,
                    "names": name,
                    "thumb": card["thumb"],
                    "rule": card["rule"],
                    "caption": name.split(",")[0][:24],
                    "color": color(self.rules.index(card["rule"]) if card["rule"] in self.rules else 0),
                }
            )
        return tiles

    # -- classes/NNNNN.html ------------------------------------------------------------------------
    def class_view(self, cls: dict, row: dict, cards: pl.DataFrame, neighbours: tuple) -> dict:
        numbers = [c for c, kind in self.shown.items() if kind in ("number", "bool")]
        totals = {"dropped": row["dropped"], "protected": row["protected"], "kept": row["samples"] - row["dropped"] - row["protected"]}
        sections = []
        for state in ("dropped", "protected", "kept"):
            mine = cards.filter(pl.col("state") == state).sort("tie") if cards.height else cards
            if mine.height:
                sections.append({"state": state, "title": STATE_TITLES[state], "total": totals[state], "cards": [self.card_view(card, numbers) for card in mine.iter_rows(named=True)]})
        kept = cards.filter(pl.col("state") == "kept").sort("tie") if cards.height else cards
        rule_counts = [
            {"index": i, "text": text, "color": color(i), "dropped": row[f"d{i}"], "width": f"{100 * row[f'd{i}'] / row['samples']:.2f}"} for i, text in enumerate(self.rules) if row[f"d{i}"]
        ]
        return {
            "title": f"class {cls['label']} · wv audit",
            "cls": cls,
            "row": row,
            "totals": totals,
            "rules": rule_counts,
            "previous": neighbour(neighbours[0]),
            "next": neighbour(neighbours[1]),
            "sorts": [{"value": f"{j}:{d}", "text": f"{c} {arrow}"} for j, c in enumerate(numbers) for d, arrow in ((1, "↑"), (-1, "↓"))],
            "contrast": [{"thumb": c["thumb"], "title": c["meta.title"]} for c in kept.iter_rows(named=True) if c["thumb"]],
            "sections": sections,
        }

    def card_view(self, card: dict, numbers: list) -> dict:
        rule_index = self.rules.index(card["matched"]) if card["matched"] in self.rules else -1
        hits = set(self.rule_columns[rule_index]) if rule_index >= 0 else set()
        badge = {"dropped": f"dropped · {card['matched']}", "protected": f"protected from · {card['matched']}", "kept": "kept"}
        return {
            "key": card["__key__"],
            "state": card["state"],
            "rule": f"r{rule_index}" if rule_index >= 0 else "",
            "color": color(rule_index) if rule_index >= 0 else KEPT,
            "badge": badge[card["state"]],
            "thumb": card["thumb"],
            "sort_values": [(j, fmt_data(card.get(c))) for j, c in enumerate(numbers)],
            "title": card.get("meta.title"),
            "description": card.get("meta.description"),
            "keywords": [(c, card[c][:KEYWORDS_SHOWN]) for c, kind in self.shown.items() if kind == "list" and card.get(c)],
            "tags": (card.get("meta.tags") or [])[:TAGS_SHOWN],
            "scores": [{"name": c, "value": fmt(card.get(c)), "hit": c in hits} for c, kind in self.shown.items() if kind in ("number", "bool", "string")],
            "source": card.get("meta.source"),
        }

    @cached_property
    def rule_columns(self) -> list:
        """The "score.column" names each rule reads (highlighted on the cards it matched)."""
        return [list(rule.columns) for rule in compile_rules(self.rules, self.schemas)]


def neighbour(label: int | None) -> dict | None:
    """The link from one class page to another (they sit in the same folder)."""
    return None if label is None else {"label": label, "href": class_page(label).split("/")[-1]}


def histogram_view(spec, counts, rule_color: str) -> dict:
    """An SVG's shapes: stacked bars per bin (kept, dropped by another rule, protected, dropped by this
    rule), the threshold lines and the axis, in a 380 x 150 view box."""
    width, height, left, right, top, bottom = 380, 150, 44, 10, 18, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    edges, bins = spec.edges, len(spec.edges) - 1
    peak = max(1, int(counts.sum(axis=0).max()))
    bar_w = plot_w / bins
    x_of = lambda v: left + (v - edges[0]) / (edges[-1] - edges[0]) * plot_w  # noqa: E731
    bars = []
    for i in range(bins):
        kept, saved, mine, other = (int(counts[row][i]) for row in range(4))
        name = f"{int(edges[i] + 0.5)}" if spec.integer else f"{edges[i]:.4g} – {edges[i + 1]:.4g}"
        rects, y = [], top + plot_h
        for n, fill, opacity in ((kept, KEPT, 1), (other, OTHER, 1), (saved, rule_color, 0.35), (mine, rule_color, 1)):
            if n:
                y -= n * plot_h / peak
                rects.append({"x": f"{left + i * bar_w + 0.5:.1f}", "y": f"{y:.1f}", "w": f"{max(bar_w - 1, 1):.1f}", "h": f"{n * plot_h / peak:.1f}", "fill": fill, "opacity": opacity})
        bars.append({"tip": f"{name}: {kept:,} kept, {saved:,} protected, {mine:,} dropped by this rule, {other:,} by other rules", "rects": rects})
    marks = []
    for op, value in spec.marks:
        x = min(max(x_of(value), left), left + plot_w)  # a threshold off the data's range sits at its edge
        inside = left <= x_of(value) <= left + plot_w
        anchor = "end" if x > left + plot_w * 0.6 else "start"
        marks.append({"x": f"{x:.1f}", "text_x": f"{x + (3 if anchor == 'start' else -3):.1f}", "anchor": anchor, "text": f"{op} {fmt(value)}{'' if inside else ' (off scale)'}"})
    ticks = [{"x": f"{left + (i + 0.5) * bar_w:.1f}", "text": int(edges[i] + 0.5)} for i in range(bins)] if spec.integer and bins <= 16 else []
    return {
        "width": width,
        "height": height,
        "left": left,
        "right_x": left + plot_w,
        "top": top,
        "base_y": top + plot_h,
        "mid_x": f"{left + plot_w / 2:.1f}",
        "peak": peak,
        "bars": bars,
        "marks": marks,
        "ticks": ticks,
        "lo": fmt(edges[0]),
        "hi": fmt(edges[-1]),
        "column": spec.column,
    }
