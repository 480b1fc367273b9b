"""`wv audit`: the report's content, that the noisy images dominate what it shows as dropped, that it
reads only the images it shows, that it is self-contained and escapes web text, resume, bad input."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from markupsafe import escape
from PIL import Image

import wv.curate.audit as audit_module
from wv.curate.audit import AuditOptions, write_report
from wv.curate.select import select
from wv.shards import sidecars
from wv.shards.root import Root

RULES = ["synthetic.clean < 0.35", "synthetic.subset == 2 and synthetic.clean < 0.45"]
CARD = re.compile(r'<article class="card (\w+)" data-key="([^"]+)"')


def write_derived_score(root, synth, seed=0):
    """As in test_select: `synthetic.clean` knows the planted noise, blurred; subset is unrelated to it."""
    root = Root(root)
    truth = pl.read_parquet(synth / "ground_truth.parquet").select("__key__", "is_noisy")
    rng = np.random.default_rng(seed)
    for shard in root.shard_names("train"):
        frame = sidecars.shard_keys(root, shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")
        noisy = frame["is_noisy"].cast(pl.Float64).to_numpy()
        sidecars.write_scores(
            root,
            "synthetic",
            shard,
            frame.select("__key__").with_columns(
                pl.Series("clean", 0.7 - 0.5 * noisy + rng.normal(0, 0.15, frame.height), dtype=pl.Float32),
                pl.Series("subset", rng.integers(0, 3, frame.height), dtype=pl.Int8),
                pl.Series("keywords", [["kw-noisy" if n else "kw-clean", "word"] for n in noisy], dtype=pl.List(pl.String)),
            ),
        )


def make_audited_root(built_root, synth, folder: Path, **options) -> tuple[Path, dict]:
    root = Path(shutil.copytree(built_root, folder / "root"))
    write_derived_score(root, synth)
    select(root, RULES, min_per_class=10, max_drop_fraction=0.6, progress=False)
    return root, write_report(root, progress=False, **options)


@pytest.fixture(scope="module")
def audited(built_root, synth_v1, tmp_path_factory):
    """(root, figures) with a report at ROOT/reports/audit; read-only."""
    return make_audited_root(built_root, synth_v1, tmp_path_factory.mktemp("audit"), per_class=12, kept_per_class=4, overview=20)


def shown_cards(report: Path) -> dict:
    """class page -> [(state, key)] of the cards it shows."""
    return {page.stem: CARD.findall(page.read_text()) for page in sorted((report / "classes").glob("*.html"))}


def test_noisy_images_dominate_the_dropped_galleries(audited, synth_v1):
    root, figures = audited
    cards = [c for page in shown_cards(root / "reports" / "audit").values() for c in page]
    truth = pl.read_parquet(synth_v1 / "ground_truth.parquet")
    noisy = set(truth.filter(pl.col("is_noisy"))["__key__"].to_list())
    dropped = [key for state, key in cards if state == "dropped"]
    kept = [key for state, key in cards if state == "kept"]
    base = Root(root).manifest("train").select(pl.col("__key__").is_in(list(noisy)).mean()).collect().item()
    share_dropped = np.mean([k in noisy for k in dropped])
    share_kept = np.mean([k in noisy for k in kept])
    assert len(dropped) >= 30
    assert share_dropped > 0.8 and share_dropped > 2 * base, (share_dropped, base)
    assert share_kept < base
    print(f"noisy share: {share_dropped:.2f} of {len(dropped)} dropped thumbnails, {share_kept:.2f} of kept ones; base rate {base:.2f}")


def test_report_figures_pages_and_thumbnails(audited):
    root, figures = audited
    report = root / "reports" / "audit"
    selection = sidecars.read_scores(Root(root), "selection", split="train").collect()
    assert figures["dropped"] == (~selection["keep"]).sum() and figures["samples"] == selection.height
    assert figures["protected"] == (selection["keep"] & selection["matched"].is_not_null()).sum()
    assert [r["dropped"] for r in figures["rules"]] == [(selection["rule"] == r).sum() for r in RULES]
    assert figures["paths"]["report"] == str(report / "index.html")
    saved = json.loads((report / "report.json").read_text())
    assert saved["format"] == "wv-audit/1" and saved["complete"] and saved["dropped"] == figures["dropped"]
    labels = Root(root).manifest("train").select(pl.col("label").unique()).collect()["label"].to_list()
    pages = shown_cards(report)
    assert sorted(pages) == [f"{label:05d}" for label in sorted(labels)]
    per_class = {label: selection.join(Root(root).manifest("train").select("__key__", "label").collect(), on="__key__").filter(pl.col("label") == label) for label in labels}
    for name, cards in pages.items():
        states = [s for s, _ in cards]
        group = per_class[int(name)]
        assert states.count("dropped") == min(12, (~group["keep"]).sum())  # capped per class
        assert states.count("kept") == min(4, (group["keep"] & group["matched"].is_null()).sum())
    thumbs = list((report / "thumbs").glob("*/*.jpg"))
    assert len(thumbs) == sum(len(c) for c in pages.values()) == sum(figures["thumbnails"].values())
    for path in thumbs[:10]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
    index = (report / "index.html").read_text()
    for rule in RULES:
        assert escape(rule) in index
    assert index.count('<svg class="hist"') == 3  # clean; subset and clean
    assert "== 2" in index and "&lt; 0.35" in index


def test_cards_show_text_keywords_and_scores(audited):
    root, _ = audited
    report = root / "reports" / "audit"
    page = next(p for p in sorted((report / "classes").glob("*.html")) if "card dropped" in p.read_text())
    text = page.read_text()
    key = CARD.search(text.split('<section class="group dropped"')[1]).group(2)
    meta = pl.concat([pl.read_parquet(p) for p in (root / "meta").glob("train-*.parquet")]).filter(pl.col("__key__") == key).row(0, named=True)
    card = text[text.index(f'data-key="{key}"') :]
    card = card[: card.index("</article>")]
    assert escape(meta["title"] or "(no title)") in card or "(no title)" in card
    assert "kw-" in card and "synthetic.clean" in card and '<div class="score hit"><dt>synthetic.clean</dt>' in card
    assert "dropped · " in card


def test_only_the_images_shown_are_read(built_root, synth_v1, tmp_path, monkeypatch):
    reads = []
    original = audit_module.read_range

    def counting(path, offset, length):
        reads.append((Path(path).name, offset))
        return original(path, offset, length)

    monkeypatch.setattr(audit_module, "read_range", counting)
    root, figures = make_audited_root(built_root, synth_v1, tmp_path, per_class=3, kept_per_class=1, overview=4)
    shown = sum(figures["thumbnails"].values())
    samples = figures["samples"]
    assert len(reads) == shown == len(set(reads)) and shown < samples / 3
    reads.clear()
    again = write_report(root, per_class=3, kept_per_class=1, overview=4, progress=False)  # a re-run reuses the thumbnails
    assert reads == [] and again["thumbnails"] == figures["thumbnails"]


def test_report_is_self_contained_and_relocatable(audited, tmp_path):
    root, _ = audited
    moved = Path(shutil.copytree(root / "reports" / "audit", tmp_path / "elsewhere"))
    for page in [moved / "index.html", *sorted((moved / "classes").glob("*.html"))]:
        text = page.read_text()
        assert not re.search(r"""(?:src|href)=['"]?(?:https?:|//)""", text), page
        assert "<link" not in text and "@import" not in text and "url(http" not in text
        for target in re.findall(r"""(?:src|href)=["']([^"'#]+)["']""", text):
            assert (page.parent / target).resolve().is_file(), (page, target)


def test_web_text_is_escaped(built_root, synth_v1, tmp_path):
    root = Path(shutil.copytree(built_root, tmp_path / "root"))
    write_derived_score(root, synth_v1)
    select(root, ["synthetic.clean < 2"], min_per_class=0, max_drop_fraction=1.0, progress=False)  # everything dropped
    shard = Root(root).shard_names("train")[0]
    meta = pl.read_parquet(Root(root).meta_path(shard))
    evil = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    meta.with_columns(pl.lit(evil).alias("title"), pl.lit(evil).alias("description")).write_parquet(Root(root).meta_path(shard))
    write_report(root, per_class=100, progress=False)
    pages = "".join(p.read_text() for p in (root / "reports" / "audit" / "classes").glob("*.html"))
    assert "<script>alert" not in pages and "onerror=alert(1)>" not in pages
    assert escape(evil) in pages


def test_unreadable_image_gets_a_card_without_thumbnail(built_root, synth_v1, tmp_path):
    root = Path(shutil.copytree(built_root, tmp_path / "root"))
    write_derived_score(root, synth_v1)
    select(root, ["synthetic.clean < 2"], min_per_class=0, max_drop_fraction=1.0, progress=False)
    row = Root(root).manifest("train").select("shard", "offset", "length").collect().row(0)
    shard_path = Root(root).shard_path(row[0])
    data = bytearray(shard_path.read_bytes())
    jpeg = data.find(b"\xff\xd8\xff", row[1])
    data[jpeg : jpeg + 200] = b"\0" * 200  # the image's header, inside its byte range
    shard_path.write_bytes(bytes(data))
    figures = write_report(root, per_class=1000, kept_per_class=0, overview=0, progress=False)
    pages = "".join(p.read_text() for p in (root / "reports" / "audit" / "classes").glob("*.html"))
    assert pages.count("image unreadable") == 1 and sum(figures["thumbnails"].values()) == figures["samples"]


def test_cli_json_and_bad_input(audited, tmp_path, wv_cli, last_json, built_root):
    root, figures = audited
    out = tmp_path / "report"
    result = wv_cli("audit", root, "--out", out, "--per-class", 12, "--kept-per-class", 4, "--overview", 20, "--workers", 1, "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result.stdout)
    assert shown["paths"]["report"] == str(out / "index.html") and shown["thumbnails"] == figures["thumbnails"]
    assert "report: " in result.stdout
    # deterministic: the same pages as the report made by the library with the same options
    assert (out / "classes" / "00000.html").read_text() == (root / "reports" / "audit" / "classes" / "00000.html").read_text()
    other = tmp_path / "not-a-report"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused = wv_cli("audit", root, "--out", other)
    assert refused.exit_code == 2 and "not an audit report" in refused.stderr and (other / "notes.txt").read_text() == "mine"
    unselected = wv_cli("audit", built_root, "--out", tmp_path / "x")
    assert unselected.exit_code == 2 and "run `wv select" in unselected.stderr
    assert wv_cli("audit", root, "--per-class", 0).exit_code == 2


def test_options_validate():
    with pytest.raises(Exception, match="thumb-size"):
        AuditOptions(thumb_size=8).validate()


def test_histogram_counts_split_every_sample_by_its_fate():
    from wv.curate.audit_read import Histogram, bin_edges, histogram_counts

    frame = pl.DataFrame(
        {
            "s.x": [0.1, 0.2, 0.35, 0.9, None, 0.15],
            "state": ["dropped", "dropped", "protected", "kept", "kept", "dropped"],
            "matched": ["x < 0.5", "other", "x < 0.5", None, None, "x < 0.5"],
        }
    )
    edges, integer = bin_edges(0.0, 1.0, pl.Float64, 10)
    counts = histogram_counts(frame, Histogram(0, "s.x", edges, integer, (("<", 0.5),)), "x < 0.5")
    assert counts.shape == (4, 10) and not integer
    assert counts.sum(axis=1).tolist() == [1, 1, 2, 1]  # kept (the null is left out), protected, dropped by it, by another
    assert counts[2, 1] == 2 and counts[3, 2] == 1 and counts[1, 3] == 1 and counts[0, 9] == 1
    edges, integer = bin_edges(0, 2, pl.Int8, 10)
    assert integer and edges == (-0.5, 0.5, 1.5, 2.5)


def test_an_interrupted_report_resumes(built_root, synth_v1, tmp_path, monkeypatch):
    import wv.curate.audit_assets as assets

    root = Path(shutil.copytree(built_root, tmp_path / "root"))
    write_derived_score(root, synth_v1)
    select(root, RULES, progress=False)

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(assets.Report, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        write_report(root, per_class=5, progress=False)
    report = root / "reports" / "audit"
    assert json.loads((report / "report.json").read_text())["complete"] is False and list(report.glob("thumbs/*/*.jpg"))
    monkeypatch.undo()
    reads = []
    monkeypatch.setattr(audit_module, "read_range", lambda *a: reads.append(a))
    figures = write_report(root, per_class=5, progress=False)
    assert reads == [] and json.loads((report / "report.json").read_text())["complete"] is True
    assert (report / "index.html").is_file() and sum(figures["thumbnails"].values()) == len(list(report.glob("thumbs/*/*.jpg")))


def test_with_the_real_text_scores(built_root, synth_v1, tmp_path):
    """lda and keywords sidecars as their scorers write them: the rule reads lda, the cards show keywords."""
    from wv.curate.keywords import KeywordOptions, score_keywords
    from wv.curate.lda import LdaOptions, score_lda

    root = Path(shutil.copytree(built_root, tmp_path / "root"))
    score_lda(root, LdaOptions(topics=12, passes=4, no_below=2), progress=False)
    score_keywords(root, KeywordOptions(), progress=False)
    chosen = select(root, ["lda.similarity < 0.3"], progress=False)
    figures = write_report(root, per_class=12, kept_per_class=4, progress=False)
    assert figures["dropped"] == chosen["dropped"] > 0
    pages = shown_cards(root / "reports" / "audit")
    dropped = [key for cards in pages.values() for state, key in cards if state == "dropped"]
    truth = pl.read_parquet(synth_v1 / "ground_truth.parquet")
    noisy = set(truth.filter(pl.col("is_noisy"))["__key__"].to_list())
    base = Root(root).manifest("train").select(pl.col("__key__").is_in(list(noisy)).mean()).collect().item()
    share = np.mean([k in noisy for k in dropped])
    print(f"lda.similarity < 0.3: noisy share {share:.2f} of {len(dropped)} dropped thumbnails; base rate {base:.2f}")
    assert share > 0.8 and share > 2 * base
    text = "".join(p.read_text() for p in (root / "reports" / "audit" / "classes").glob("*.html"))
    assert '<ul class="kw" title="keywords.keywords">' in text and '<div class="score hit"><dt>lda.similarity</dt>' in text
    assert "lda.top_topics" not in text  # lists of numbers are left off the cards


def test_figures_and_class_table_from_the_counts():
    from wv.curate.audit import class_table, report_figures

    rules = ["s.a < 1", "s.b > 2"]
    counts = pl.DataFrame(
        {
            "label": [0, 0, 0, 1, 1, 1],
            "source": ["flickr", "google", "google", "flickr", "google", "flickr"],
            "state": ["dropped", "kept", "protected", "dropped", "kept", "dropped"],
            "matched": ["s.a < 1", None, "s.a < 1", "s.b > 2", None, "s.a < 1"],
            "len": [3, 5, 1, 2, 2, 1],
        },
        schema_overrides={"len": pl.UInt32},
    )
    cards = pl.DataFrame({"state": ["dropped", "dropped", "kept"]})
    figures = report_figures(counts, rules, cards)
    assert figures == {
        "samples": 14,
        "kept": 8,
        "dropped": 6,
        "protected": 1,
        "rules": [{"rule": "s.a < 1", "dropped": 4, "protected": 1}, {"rule": "s.b > 2", "dropped": 2, "protected": 0}],
        "sources": {"flickr": {"samples": 6, "dropped": 6}, "google": {"samples": 8, "dropped": 0}},
        "classes": 2,
        "classes_with_drops": 2,
        "thumbnails": {"dropped": 2, "kept": 1},
    }
    table = class_table(counts, rules)
    assert table.select("label", "samples", "dropped", "protected", "d0", "d1").rows() == [(1, 5, 3, 0, 1, 2), (0, 9, 3, 1, 3, 0)]
