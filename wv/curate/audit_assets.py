"""The audit report's pages: HTML with inline CSS, JS and SVG, no network (works from file://).

Everything from the data (web titles, descriptions, keywords, class names) is escaped here or, in
the browser, set with textContent; the page data travels as JSON in a <script type=application/json>.
"""

import html
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import polars as pl

from wv.curate.rules import compile_rules
from wv.io import atomic_path

PALETTE = ("#d1495b", "#7b4fa8", "#e39b1b", "#00798c", "#8f5b2d", "#3d6fd8", "#2e8b57", "#c2185b")
KEPT, OTHER = "#b7c3d3", "#f1c9a5"
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def color(rule: int) -> str:
    return PALETTE[rule % len(PALETTE)]


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def page_json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


@dataclass
class Report:
    root: object  # wv.shards.root.Root
    out: Path
    rules: list  # rule texts, in the selection's order
    counts: pl.DataFrame  # label, source, state, matched, len
    histograms: list  # [(Histogram, 4 x bins counts: kept, protected, dropped by the rule, dropped by another)]
    cards: pl.DataFrame  # one row per sample shown
    shown: dict  # "score.column" -> number | bool | string | list
    classes: list  # wv.json classes
    options: object  # AuditOptions
    schemas: dict

    # -- figures ---------------------------------------------------------------------------------
    def class_table(self) -> pl.DataFrame:
        """label, samples, dropped, protected, d0..dN (dropped per rule), sorted by drop rate."""
        c = self.counts
        per_rule = [pl.col("len").filter((pl.col("state") == "dropped") & (pl.col("matched") == text)).sum().alias(f"d{i}")
                    for i, text in enumerate(self.rules)]
        table = c.group_by("label").agg(
            pl.col("len").sum().alias("samples"),
            pl.col("len").filter(pl.col("state") == "dropped").sum().alias("dropped"),
            pl.col("len").filter(pl.col("state") == "protected").sum().alias("protected"),
            *per_rule,
        )
        return table.with_columns((pl.col("dropped") / pl.col("samples")).alias("rate")).sort(["rate", "label"], descending=[True, False])

    def figures(self) -> dict:
        c = self.counts
        total = int(c["len"].sum())
        state = {s: int(c.filter(pl.col("state") == s)["len"].sum()) for s in ("dropped", "protected", "kept")}
        rules = [{"rule": text,
                  "dropped": int(c.filter((pl.col("state") == "dropped") & (pl.col("matched") == text))["len"].sum()),
                  "protected": int(c.filter((pl.col("state") == "protected") & (pl.col("matched") == text))["len"].sum())}
                 for text in self.rules]
        sources = {}
        for row in c.group_by("source").agg(pl.col("len").sum().alias("samples"),
                                            pl.col("len").filter(pl.col("state") == "dropped").sum().alias("dropped")).sort("source").iter_rows(named=True):
            sources[row["source"]] = {"samples": row["samples"], "dropped": row["dropped"]}
        table = self.class_table()
        shown = self.cards.group_by("state").len() if self.cards.height else pl.DataFrame({"state": [], "len": []})
        return {
            "samples": total, "kept": total - state["dropped"], "dropped": state["dropped"], "protected": state["protected"],
            "rules": rules, "sources": sources, "classes": table.height,
            "classes_with_drops": table.filter(pl.col("dropped") > 0).height,
            "thumbnails": {row["state"]: row["len"] for row in shown.iter_rows(named=True)},
        }

    # -- pages -----------------------------------------------------------------------------------
    def write(self) -> set:
        names = {c["label"]: c for c in self.classes}
        table = self.class_table()
        labels = sorted(table["label"].to_list())
        by_label = self.cards.partition_by("meta.label", as_dict=True) if self.cards.height else {}
        figures = self.figures()
        rows = {row["label"]: row for row in table.iter_rows(named=True)}
        written = set()
        for position, label in enumerate(labels):
            cards = by_label.get((label,), pl.DataFrame())
            row = rows[label]
            neighbours = (labels[position - 1] if position else None, labels[position + 1] if position + 1 < len(labels) else None)
            relative = class_page(label)
            write_page(self.out / relative, self.class_html(names.get(label, {"label": label, "names": "", "synset": ""}), row, cards, neighbours))
            written.add(relative)
        write_page(self.out / "index.html", self.index_html(figures, table, names))
        return written

    def index_html(self, figures: dict, table: pl.DataFrame, names: dict) -> str:
        data = {
            "rules": self.rules,
            "colors": [color(i) for i in range(len(self.rules))],
            "classes": [[r["label"], names.get(r["label"], {}).get("names", ""), names.get(r["label"], {}).get("synset", ""),
                         r["samples"], r["dropped"], r["protected"], [r[f"d{i}"] for i in range(len(self.rules))]]
                        for r in table.iter_rows(named=True)],
        }
        title = f"wv audit · {self.root.path.name}"
        body = [
            f"<header><h1>What <code>wv select</code> discarded</h1><p class=sub>{esc(self.root.path)} · split "
            f"{esc(self.options.split)} · selection <code>{esc(self.options.selection)}</code></p></header>",
            self.headline(figures),
            self.rules_section(figures),
            self.mosaic(names, figures),
            self.sources_section(figures),
            CLASSES_SECTION,
            f"<script type='application/json' id='wv-data'>{page_json(data)}</script>",
            f"<script>{INDEX_JS}</script>",
        ]
        return page(title, "\n".join(body))

    def headline(self, f: dict) -> str:
        cells = [("samples", f"{f['samples']:,}", ""), ("kept", f"{f['kept']:,}", pct(f["kept"], f["samples"])),
                 ("dropped", f"{f['dropped']:,}", pct(f["dropped"], f["samples"])),
                 ("protected", f"{f['protected']:,}", "matched a rule, kept to protect a small class"),
                 ("classes with drops", f"{f['classes_with_drops']:,}", f"of {f['classes']:,}")]
        return "<section class=stats>" + "".join(
            f"<div class='stat {esc(k.split()[0])}'><div class=n>{v}</div><div class=k>{esc(k)}</div><div class=x>{esc(x)}</div></div>"
            for k, v, x in cells) + "</section>"

    def rules_section(self, f: dict) -> str:
        legend = (f"<span class=sw style='background:{KEPT}'></span>kept <span class=sw style='background:var(--accent);opacity:.35'>"
                  "</span>protected <span class=sw style='background:var(--accent)'></span>dropped by this rule "
                  f"<span class=sw style='background:{OTHER}'></span>dropped by another rule")
        parts = ["<section><h2>Rules</h2><p class=help>Each sample is dropped by the first rule that matches it. "
                 f"Histograms count every sample by its score; the dashed line is the rule's threshold. {legend}</p><div class=rules>"]
        for i, (text, r) in enumerate(zip(self.rules, f["rules"])):
            hists = "".join(histogram_svg(spec, counts, color(i)) for spec, counts in self.histograms if spec.rule == i)
            protected = f" · <b>{r['protected']:,}</b> protected" if r["protected"] else ""
            parts.append(
                f"<div class=rule style='--c:{color(i)}'><div class=rule-head><code>{esc(text)}</code></div>"
                f"<div class=rule-n><b>{r['dropped']:,}</b> dropped ({pct(r['dropped'], f['samples'])})"
                f"{protected}</div>"
                f"{hists or '<p class=help>(no number column compared with a value: no histogram)</p>'}</div>")
        parts.append("</div></section>")
        return "".join(parts)

    def sources_section(self, f: dict) -> str:
        rows = "".join(
            f"<tr><td>{esc(source)}</td><td class=num>{s['samples']:,}</td><td class=num>{s['dropped']:,}</td>"
            f"<td><div class=bar><span style='width:{100 * s['dropped'] / max(1, s['samples']):.2f}%'></span></div>"
            f"<small>{pct(s['dropped'], s['samples'])}</small></td></tr>"
            for source, s in f["sources"].items())
        return ("<section><h2>By source</h2><table class=plain><thead><tr><th>source</th><th>samples</th><th>dropped</th>"
                f"<th>drop rate</th></tr></thead><tbody>{rows}</tbody></table></section>")

    def mosaic(self, names: dict, figures: dict) -> str:
        if not self.cards.height or not self.options.overview:
            return ""
        dropped = self.cards.filter(pl.col("state") == "dropped").sort("tie").head(self.options.overview)
        tiles = []
        for card in dropped.iter_rows(named=True):
            label = card["meta.label"]
            name = names.get(label, {}).get("names", "")
            img = (f"<img src='{esc(card['thumb'])}' alt=''>" if card["thumb"] else "<div class=noimg>unreadable</div>")
            tiles.append(
                f"<a class=tile href='{class_page(label)}' data-label='{label}' data-names='{esc(name.lower())}' "
                f"title='{esc(name)} — {esc(card['rule'])}' style='--c:{color(self.rules.index(card['rule']) if card['rule'] in self.rules else 0)}'>"
                f"{img}<span>{esc(label)} · {esc(name.split(',')[0][:24])}</span></a>")
        if not tiles:
            return ""
        return (f"<section><h2>Dropped images, at random</h2><p class=help>{len(tiles)} of {figures['dropped']:,}; "
                f"the class filter below applies here too. Click one for its class.</p><div class=mosaic id=mosaic>{''.join(tiles)}</div></section>")

    def class_html(self, cls: dict, row: dict, cards: pl.DataFrame, neighbours: tuple) -> str:
        label = cls["label"]
        numbers = [c for c, kind in self.shown.items() if kind in ("number", "bool")]
        sorts = ["<option value=''>shuffled</option>"] + [
            f"<option value='{j}:{d}'>{esc(c)} {arrow}</option>" for j, c in enumerate(numbers) for d, arrow in ((1, "↑"), (-1, "↓"))]
        nav = "".join(
            f"<a class=nav href='{class_page(n).split('/')[-1]}'>{'← ' if k == 0 else ''}class {n}{' →' if k == 1 else ''}</a>"
            for k, n in enumerate(neighbours) if n is not None)
        protected = f" · {row['protected']:,} protected" if row["protected"] else ""
        body = f"""
<header><p class=crumbs><a href='../index.html'>← all classes</a>{nav}
<label class=jump>go to class <input id=jump type=number min=0 placeholder='label'></label></p>
<h1><span class=lbl>{label}</span> {esc(cls.get('names', ''))}</h1>
<p class=sub>{esc(cls.get('synset', ''))} · {row['samples']:,} samples · <b>{row['dropped']:,}</b> dropped
({pct(row['dropped'], row['samples'])}){protected}</p>
<div class='bar wide'>{self.rate_bar(row)}</div></header>
{self.contrast_strip(cards)}
<div class=toolbar><div class=chips>{self.filter_chips(row)}</div>
<label>sort <select id=sort>{''.join(sorts)}</select></label></div>
{self.card_sections(row, cards, numbers) or '<p class=help>No samples shown.</p>'}
<script>{CLASS_JS}</script>"""
        return page(f"class {label} · wv audit", body)

    def rate_bar(self, row: dict) -> str:
        return "".join(f"<span style='width:{100 * row[f'd{i}'] / row['samples']:.2f}%;background:{color(i)}' title='{esc(t)}'></span>"
                       for i, t in enumerate(self.rules) if row[f"d{i}"])

    def filter_chips(self, row: dict) -> str:
        chips = ["<button class='chip on' data-f='all'>all</button>"]
        for i, text in enumerate(self.rules):
            if row[f"d{i}"]:
                chips.append(f"<button class=chip data-f='r{i}' style='--c:{color(i)}'>{esc(text)} <b>{row[f'd{i}']:,}</b></button>")
        if row["protected"]:
            chips.append(f"<button class=chip data-f='protected'>protected <b>{row['protected']:,}</b></button>")
        chips.append(f"<button class=chip data-f='kept'>kept <b>{row['samples'] - row['dropped'] - row['protected']:,}</b></button>")
        return "".join(chips)

    def contrast_strip(self, cards: pl.DataFrame) -> str:
        """Kept images in a strip that stays at the top while the dropped ones scroll by."""
        kept = cards.filter(pl.col("state") == "kept").sort("tie") if cards.height else cards
        images = "".join(f"<img src='../{esc(c['thumb'])}' alt='' title='kept: {esc(c['meta.title'])}'>"
                         for c in kept.iter_rows(named=True) if c["thumb"])
        return f"<div class=contrast><span>kept, for contrast</span>{images}</div>" if images else ""

    def card_sections(self, row: dict, cards: pl.DataFrame, numbers: list) -> str:
        titles = {"dropped": "Dropped", "protected": "Protected — matched a rule, kept so the class keeps enough samples",
                  "kept": "Kept, for contrast"}
        totals = {"dropped": row["dropped"], "protected": row["protected"], "kept": row["samples"] - row["dropped"] - row["protected"]}
        sections = []
        for state in ("dropped", "protected", "kept"):
            mine = cards.filter(pl.col("state") == state).sort("tie") if cards.height else cards
            if mine.height:
                grid = "".join(self.card_html(card, numbers) for card in mine.iter_rows(named=True))
                sections.append(f"<section class='group {state}' data-state='{state}'><h2>{titles[state]} "
                                f"<small>{mine.height:,} shown of {totals[state]:,}</small></h2><div class=grid>{grid}</div></section>")
        return "".join(sections)

    def card_html(self, card: dict, numbers: list) -> str:
        rule_index = self.rules.index(card["matched"]) if card["matched"] in self.rules else -1
        state = card["state"]
        hits = set(self.rule_columns[rule_index]) if rule_index >= 0 else set()
        data = " ".join(f"data-s{j}='{esc(fmt_data(card.get(c)))}'" for j, c in enumerate(numbers))
        badge = {"dropped": f"dropped · {esc(card['matched'])}", "protected": f"protected from · {esc(card['matched'])}", "kept": "kept"}[state]
        img = (f"<a class=ph href='../{esc(card['thumb'])}' target=_blank><img src='../{esc(card['thumb'])}' alt='' decoding=async></a>"
               if card["thumb"] else "<div class='ph noimg'>image unreadable</div>")
        scores = "".join(f"<tr{' class=hit' if c in hits else ''}><th>{esc(c)}</th><td>{esc(fmt(card.get(c)))}</td></tr>"
                         for c, kind in self.shown.items() if kind in ("number", "bool", "string"))
        keywords = "".join(f"<ul class=kw title='{esc(c)}'>{''.join(f'<li>{esc(w)}</li>' for w in card.get(c)[:30])}</ul>"
                           for c, kind in self.shown.items() if kind == "list" and card.get(c))
        tags = "".join(f"<li>{esc(t)}</li>" for t in (card.get("meta.tags") or [])[:20])
        description = card.get("meta.description")
        description = f"<p class=desc title='click to read all'>{esc(description)}</p>" if description else ""
        return (f"<article class='card {state}' data-key='{esc(card['__key__'])}' data-state='{state}' "
                f"data-rule='{'r' + str(rule_index) if rule_index >= 0 else ''}' style='--c:{color(rule_index) if rule_index >= 0 else KEPT}' {data}>"
                f"{img}<div class=body><div class=badge title='{badge}'>{badge}</div>"
                f"<h3>{esc(card.get('meta.title')) or '<i>(no title)</i>'}</h3>"
                f"{description}"
                f"{keywords}"
                f"{f'<ul class=tags title=tags>{tags}</ul>' if tags else ''}"
                f"{f'<table class=scores>{scores}</table>' if scores else ''}"
                f"<p class=key>{esc(card.get('meta.source'))} · {esc(card['__key__'])}</p></div></article>")

    @cached_property
    def rule_columns(self) -> list:
        """The "score.column" names each rule reads (highlighted on the cards it matched)."""
        return [list(rule.columns) for rule in compile_rules(self.rules, self.schemas)]


def fmt_data(value) -> str:
    if value is None or isinstance(value, (list, str)) or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(float(value))


def write_page(path: Path, html_text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(html_text, encoding="utf-8")


def class_page(label: int) -> str:
    return f"classes/{label:05d}.html"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def histogram_svg(spec, counts, rule_color: str) -> str:
    """Stacked bars per bin (kept, dropped by another rule, protected, dropped by this rule) and the threshold lines."""
    width, height, left, right, top, bottom = 380, 150, 44, 10, 18, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    edges = spec.edges
    bins = len(edges) - 1
    totals = counts.sum(axis=0)
    peak = max(1, int(totals.max()))
    scale = plot_h / peak
    bar_w = plot_w / bins
    x_of = lambda v: left + (v - edges[0]) / (edges[-1] - edges[0]) * plot_w  # noqa: E731
    shapes = []
    for i in range(bins):
        y = top + plot_h
        kept, saved, mine, other = (int(counts[row][i]) for row in range(4))
        label = (f"{int(edges[i] + 0.5)}" if spec.integer else f"{edges[i]:.4g} – {edges[i + 1]:.4g}")
        tip = f"{label}: {kept:,} kept, {saved:,} protected, {mine:,} dropped by this rule, {other:,} by other rules"
        segments = []
        for n, fill, opacity in ((kept, KEPT, 1), (other, OTHER, 1), (saved, rule_color, 0.35), (mine, rule_color, 1)):
            if n:
                h = n * scale
                y -= h
                segments.append(f"<rect x='{left + i * bar_w + 0.5:.1f}' y='{y:.1f}' width='{max(bar_w - 1, 1):.1f}' "
                                f"height='{h:.1f}' fill='{fill}' fill-opacity='{opacity}'/>")
        shapes.append(f"<g><title>{esc(tip)}</title>{''.join(segments)}</g>")
    for op, value in spec.marks:
        x = min(max(x_of(value), left), left + plot_w)  # a threshold off the data's range sits at its edge
        off = "" if left < x_of(value) < left + plot_w or x_of(value) in (left, left + plot_w) else " (off scale)"
        anchor = "end" if x > left + plot_w * 0.6 else "start"
        shapes.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 4}' y2='{top + plot_h}' class=thr />"
                      f"<text x='{x + (3 if anchor == 'start' else -3):.1f}' y='{top - 6}' class=thr-t text-anchor='{anchor}'>"
                      f"{esc(op)} {esc(fmt(value))}{off}</text>")
    axis = [f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' class=ax />",
            f"<text x='{left - 4}' y='{top + 4}' class=ay>{peak:,}</text>", f"<text x='{left - 4}' y='{top + plot_h}' class=ay>0</text>"]
    if spec.integer and bins <= 16:
        axis += [f"<text x='{left + (i + 0.5) * bar_w:.1f}' y='{height - 12}' class=axm>{int(edges[i] + 0.5)}</text>" for i in range(bins)]
    else:
        axis += [f"<text x='{left}' y='{height - 12}' class=ax0>{esc(fmt(edges[0]))}</text>",
                 f"<text x='{left + plot_w}' y='{height - 12}' class=ax1>{esc(fmt(edges[-1]))}</text>"]
    axis.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 1}' class=axm>{esc(spec.column)}</text>")
    return (f"<svg class=hist viewBox='0 0 {width} {height}' role=img aria-label='histogram of {esc(spec.column)}'>"
            f"{''.join(shapes)}{''.join(axis)}</svg>")


CLASSES_SECTION = """
<section><h2>Classes</h2>
<div class=toolbar>
  <label>class <input id=q type=search placeholder='name, synset or label' autocomplete=off></label>
  <label>rule <select id=rule><option value='-1'>any</option></select></label>
  <label>sort <select id=order><option value=rate>drop rate</option><option value=dropped>dropped</option>
  <option value=samples>samples</option><option value=label>label</option></select></label>
  <span id=count class=help></span>
</div>
<table class=classes><thead><tr><th>label</th><th>class</th><th class=num>samples</th><th class=num>dropped</th>
<th class=num>protected</th><th>drop rate, by rule</th></tr></thead><tbody id=rows></tbody></table>
<p><button id=more class=chip hidden>show more</button></p>
</section>"""

INDEX_JS = r"""
(function () {
  const data = JSON.parse(document.getElementById('wv-data').textContent);
  const q = document.getElementById('q'), ruleSel = document.getElementById('rule'), order = document.getElementById('order');
  const rows = document.getElementById('rows'), more = document.getElementById('more'), count = document.getElementById('count');
  const PAGE = 200;
  let limit = PAGE;
  data.rules.forEach(function (text, i) {
    const o = document.createElement('option'); o.value = String(i); o.textContent = text; ruleSel.appendChild(o);
  });
  function pad(n) { return String(n).padStart(5, '0'); }
  function matches(c, needle) {
    if (!needle) return true;
    return String(c[0]) === needle || c[1].toLowerCase().includes(needle) || c[2].toLowerCase().includes(needle);
  }
  function cell(tr, text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
  function render() {
    const needle = q.value.trim().toLowerCase(), r = Number(ruleSel.value), key = order.value;
    let list = data.classes.filter(function (c) { return matches(c, needle) && (r < 0 || c[6][r] > 0); });
    const value = {rate: function (c) { return r < 0 ? c[4] / c[3] : c[6][r] / c[3]; }, dropped: function (c) { return r < 0 ? c[4] : c[6][r]; },
                   samples: function (c) { return c[3]; }, label: function (c) { return -c[0]; }}[key];
    list.sort(function (a, b) { return value(b) - value(a) || a[0] - b[0]; });
    rows.replaceChildren();
    list.slice(0, limit).forEach(function (c) {
      const tr = document.createElement('tr');
      cell(tr, String(c[0]), 'num');
      const link = document.createElement('a'); link.href = 'classes/' + pad(c[0]) + '.html'; link.textContent = c[1] || ('class ' + c[0]);
      cell(tr, '').appendChild(link);
      cell(tr, c[3].toLocaleString(), 'num'); cell(tr, c[4].toLocaleString(), 'num'); cell(tr, c[5] ? c[5].toLocaleString() : '', 'num');
      const bar = document.createElement('div'); bar.className = 'bar';
      c[6].forEach(function (n, i) {
        if (!n) return;
        const s = document.createElement('span'); s.style.width = (100 * n / c[3]).toFixed(2) + '%'; s.style.background = data.colors[i];
        s.title = data.rules[i] + ': ' + n; bar.appendChild(s);
      });
      const td = cell(tr, ''); td.appendChild(bar);
      const small = document.createElement('small'); small.textContent = (100 * c[4] / c[3]).toFixed(1) + '%'; td.appendChild(small);
      rows.appendChild(tr);
    });
    count.textContent = Math.min(limit, list.length) + ' of ' + list.length + ' classes shown' + (list.length < data.classes.length ? ' (filtered from ' + data.classes.length + ')' : '');
    more.hidden = list.length <= limit;
    document.querySelectorAll('#mosaic .tile').forEach(function (t) {
      const ok = !needle || t.dataset.label === needle || t.dataset.names.includes(needle);
      t.hidden = !ok;
    });
  }
  q.addEventListener('input', function () { limit = PAGE; render(); });
  ruleSel.addEventListener('change', function () { limit = PAGE; render(); });
  order.addEventListener('change', render);
  more.addEventListener('click', function () { limit += PAGE; render(); });
  render();
})();
"""

CLASS_JS = r"""
(function () {
  let filter = 'all';
  const chips = document.querySelectorAll('.chip[data-f]');
  function apply() {
    document.querySelectorAll('.card').forEach(function (card) {
      const ok = filter === 'all' || card.dataset.rule === filter && card.dataset.state === 'dropped' || card.dataset.state === filter;
      card.hidden = !ok;
    });
    document.querySelectorAll('section.group').forEach(function (s) {
      s.hidden = !s.querySelector('.card:not([hidden])');
    });
    chips.forEach(function (c) { c.classList.toggle('on', c.dataset.f === filter); });
  }
  chips.forEach(function (c) { c.addEventListener('click', function () { filter = c.dataset.f; apply(); }); });
  const sort = document.getElementById('sort');
  document.querySelectorAll('.grid').forEach(function (g) {
    Array.prototype.forEach.call(g.children, function (card, i) { card.dataset.order = String(i); });
  });
  sort.addEventListener('change', function () {
    const parts = sort.value.split(':'), j = parts[0], dir = Number(parts[1] || 1);
    document.querySelectorAll('.grid').forEach(function (g) {
      const cards = Array.prototype.slice.call(g.children);
      cards.sort(function (a, b) {
        if (!j) return Number(a.dataset.order) - Number(b.dataset.order);
        const x = a.dataset['s' + j], y = b.dataset['s' + j];
        if (x === '' && y === '') return 0;
        if (x === '') return 1;
        if (y === '') return -1;
        return dir * (Number(x) - Number(y));
      });
      cards.forEach(function (c) { g.appendChild(c); });
    });
  });
  document.querySelectorAll('.desc').forEach(function (d) { d.addEventListener('click', function () { d.classList.toggle('open'); }); });
  const jump = document.getElementById('jump');
  jump.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && jump.value !== '') location.href = String(Number(jump.value)).padStart(5, '0') + '.html';
  });
})();
"""

CSS = """
:root{--ink:#1d2330;--mute:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--accent:#d1495b}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header,section,.toolbar,.stats{max-width:1400px;margin:0 auto;padding:0 24px}
header{padding-top:22px}
h1{font-size:24px;margin:6px 0}h2{font-size:18px;margin:28px 0 8px}h2 small{font-weight:400;color:var(--mute);font-size:13px;margin-left:6px}
.sub,.help{color:var(--mute);margin:4px 0}.help{font-size:13px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef0f4;padding:1px 5px;border-radius:4px}
a{color:#2952a3;text-decoration:none}a:hover{text-decoration:underline}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-top:16px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.stat .n{font-size:26px;font-weight:650}.stat .k{color:var(--mute);text-transform:uppercase;font-size:11px;letter-spacing:.06em}
.stat .x{color:var(--mute);font-size:12px}.stat.dropped .n{color:var(--accent)}.stat.kept .n{color:#2e7d4f}
.rules{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:14px}
.rule{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--c);border-radius:10px;padding:12px 14px}
.rule-head code{font-size:13.5px}.rule-n{margin:6px 0;color:var(--mute)}.rule-n b{color:var(--ink)}
svg.hist{width:100%;max-width:420px;display:block;margin-top:6px;font:10px system-ui,sans-serif}
svg .thr{stroke:#111;stroke-width:1.5;stroke-dasharray:4 3}svg .thr-t{font-weight:600;fill:#111}
svg .ax{stroke:#98a2b3}svg .ay{text-anchor:end;fill:var(--mute)}svg .ax0{fill:var(--mute)}svg .ax1{text-anchor:end;fill:var(--mute)}
svg .axm{text-anchor:middle;fill:var(--mute)}svg g:hover rect{opacity:.75}
.mosaic{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px}
.tile{position:relative;display:block;background:#dde2ea;border-radius:8px;overflow:hidden;aspect-ratio:4/3;border-bottom:4px solid var(--c)}
.tile img{width:100%;height:100%;object-fit:cover;display:block}
.tile span{position:absolute;left:0;right:0;bottom:0;padding:2px 6px;font-size:11px;color:#fff;background:linear-gradient(transparent,rgba(0,0,0,.7));white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile[hidden],.card[hidden],section[hidden]{display:none}
table.plain,table.classes{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line)}th{font-size:12px;color:var(--mute);font-weight:600;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-flex;width:180px;height:10px;background:#e9edf3;border-radius:5px;overflow:hidden;vertical-align:middle;margin-right:8px}
.bar span{display:block;height:100%;background:var(--accent)}.bar.wide{width:100%;max-width:600px;height:12px;margin:6px 0 0}
.toolbar{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:12px auto}
.toolbar label{color:var(--mute);font-size:13px}
input,select{font:inherit;padding:5px 8px;border:1px solid #cfd5df;border-radius:6px;background:#fff}
input[type=search]{width:260px}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{font:inherit;font-size:12.5px;border:1px solid #cfd5df;border-left:4px solid var(--c,#98a2b3);background:#fff;border-radius:16px;padding:3px 10px;cursor:pointer}
.chip.on{background:var(--ink);color:#fff;border-color:var(--ink)}
.crumbs{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin:0}.crumbs .jump input{width:90px}
.lbl{display:inline-block;background:var(--ink);color:#fff;border-radius:6px;padding:0 8px;font-size:18px;vertical-align:middle}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--c);border-radius:10px;overflow:hidden;display:flex;flex-direction:column}
.card.kept{opacity:.96}.ph{display:block;background:repeating-conic-gradient(#eef0f3 0 25%,#fff 0 50%) 0 0/16px 16px;aspect-ratio:4/3}
.ph img{width:100%;height:100%;object-fit:contain;display:block}.noimg{display:flex;align-items:center;justify-content:center;color:var(--mute);font-size:12px}
.body{padding:8px 10px 10px}.badge{display:inline-block;font-size:11px;font-weight:600;color:#fff;background:var(--c);border-radius:4px;padding:1px 6px;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.card.kept .badge{color:var(--ink)}.card.protected .badge{background:#fff;color:var(--c);box-shadow:inset 0 0 0 1px var(--c)}
.card h3{font-size:13.5px;margin:6px 0 2px;word-break:break-word}
.desc{margin:2px 0;color:#444c5c;font-size:12.5px;display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden;word-break:break-word;cursor:pointer}
.desc.open{-webkit-line-clamp:unset}
ul.kw,ul.tags{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px}
ul.kw li{background:#e8f0fe;color:#1e3a8a;border-radius:10px;padding:0 7px;font-size:11.5px}
ul.tags li{background:#f2f4f7;color:#475467;border-radius:10px;padding:0 7px;font-size:11.5px}
ul.tags li::before{content:"#"}
table.scores{width:100%;border-collapse:collapse;margin-top:4px;font-size:12px}
table.scores th,table.scores td{padding:1px 4px;border:0;background:none;color:var(--mute);font-weight:400}
table.scores td{text-align:right;font-variant-numeric:tabular-nums;color:var(--ink)}
table.scores tr.hit th,table.scores tr.hit td{color:var(--c);font-weight:650}
.key{color:#98a2b3;font-size:11px;margin:6px 0 0;word-break:break-all}
section:last-of-type{padding-bottom:40px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.contrast{position:sticky;top:0;z-index:2;display:flex;gap:6px;align-items:center;overflow-x:auto;background:rgba(246,247,249,.96);
  border-bottom:1px solid var(--line);padding:8px 24px;margin-top:12px;backdrop-filter:blur(4px)}
.contrast span{color:#2e7d4f;font-size:12px;font-weight:600;white-space:nowrap;margin-right:4px}
.contrast img{height:56px;border-radius:5px;border:2px solid #9ccfb0;flex:none}
"""
