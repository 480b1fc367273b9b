"""`wv score noise` (wv.curate.noise_core + driver) and `wv score labelissues`.

The core on planted arrays: every kind of noise, text and image evidence, quality floors. The
command on a small `wv synth` root with planted noise of every kind: quality floors against the
ground truth, resume, cleanlab on the same probe, select and audit driven by it; text evidence only;
no evidence at all (one sentence, nothing written).
"""

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from tests.curate.image_data import trained_checkpoint
from wv.curate import noise_core
from wv.curate.embed import embed
from wv.models import ModelSpec
from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth

KINDS = ("clean", "flip", "image_flip", "outlier", "offtopic_text")
TEXT_OFF = {"flip", "outlier", "offtopic_text"}
IMAGE_OFF = {"flip", "image_flip", "outlier"}


def planted(n=3000, classes=5, seed=0):
    """Two text and two image components per sample, shifted where that source is off; kinds in proportion 6:1:1:1:1."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(KINDS, size=n, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    labels = rng.integers(0, classes, size=n)
    class_shift = rng.normal(0, 2, size=classes)  # classes differ in scale: the per-class z-scores must absorb it
    text_off = np.isin(kinds, list(TEXT_OFF))
    image_off = np.isin(kinds, list(IMAGE_OFF))
    columns = [rng.normal(0, 1, n) - 3 * text_off + class_shift[labels] for _ in range(2)]
    columns += [rng.normal(0, 1, n) - 3.5 * image_off + class_shift[labels] for _ in range(2)]
    columns[1][rng.random(n) < 0.1] = np.nan  # missing values (no keywords, empty text)
    return kinds, labels, columns, ["text", "text", "image", "image"]


def run_core(labels, columns, groups, classes=5):
    z = np.stack([noise_core.suspicion(c, labels, noise_core.class_grids(c, labels, classes), higher_is_noisier=False) for c in columns], 1)
    mix = noise_core.fit_mixture(z, groups)
    return noise_core.noise_posterior(mix, z)


def test_core_separates_every_kind_and_spares_offtopic_text():
    kinds, labels, columns, groups = planted()
    result = run_core(labels, columns, groups)
    noisy = np.isin(kinds, list(IMAGE_OFF))
    p = result["p_noisy"]
    assert roc_auc_score(noisy, p) > 0.97
    assert f1_score(noisy, p > 0.5) > 0.9
    by_kind = {k: float((p[kinds == k] > 0.5).mean()) for k in KINDS}
    assert by_kind["image_flip"] > 0.8 and by_kind["flip"] > 0.9 and by_kind["outlier"] > 0.9
    assert by_kind["offtopic_text"] < 0.2 and by_kind["clean"] < 0.05  # a fitting image with off-topic text is not a wrong label
    assert roc_auc_score(np.isin(kinds, list(TEXT_OFF)), result["p_text_off"]) > 0.97  # ... but its text is ranked off topic
    assert result["contributions"].shape == (len(kinds), 4)


def test_core_with_text_evidence_only_calls_the_text():
    kinds, labels, columns, groups = planted(seed=1)
    result = run_core(labels, columns[:2], groups[:2])
    text_off = np.isin(kinds, list(TEXT_OFF))
    assert np.array_equal(result["p_noisy"], result["p_text_off"])
    assert roc_auc_score(text_off, result["p_noisy"]) > 0.95
    again = run_core(labels, columns[:2], groups[:2])
    assert np.array_equal(again["p_noisy"], result["p_noisy"])  # deterministic


def test_keyword_agreement_leaves_the_sample_out():
    labels = np.array([0, 0, 1, 1])
    keywords = [["cat", "cat"], ["cat"], ["dog"], ["cat"]]
    pairs = pl.DataFrame({"label": [0, 1, 1], "word": ["cat", "dog", "cat"], "len": [3, 1, 1]})
    words, tokens = pl.DataFrame({"word": ["cat", "dog"], "len": [4, 1]}), np.array([3.0, 2.0])
    scores = noise_core.keyword_agreement(labels, keywords, pairs, words, tokens)
    assert scores[1] > 0 > scores[3]  # "cat" is typical of class 0, not of class 1 (whose only "cat" is its own)
    # sample 0 ("cat" twice, class 0), by the formula: its own two words left out of every count, smoothing 0.5, 2 words known
    expected = 2 * (np.log((3 - 2 + 0.5) / (3 - 2 + 0.5 * 2)) - np.log((4 - 2 + 0.5) / (5 - 2 + 0.5 * 2))) / 2
    assert scores[0] == pytest.approx(expected)
    assert np.isnan(noise_core.keyword_agreement(np.array([0]), [[]], pairs, words, tokens)[0])


# -- the command on a planted-noise root -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """6 classes x 60, 30% noise (flips, image-only flips, outliers) and 10% off-topic text; features `cnn`."""
    base = tmp_path_factory.mktemp("noise")
    synth, root = base / "synth", base / "root"
    write_synth(synth, SynthOptions(classes=6, per_class=60, noise=0.3, outlier_share=0.3, image_flip_share=0.3, offtopic_text=0.1, val_per_class=2, width=40, height=30, seed=5))
    build(synth, root, BuildOptions(split="train", shard_size=30), workers=1, progress=False)
    checkpoint = trained_checkpoint(tmp_path_factory, root=root, epochs=4)
    embed(root, ModelSpec(model=str(checkpoint)), name="cnn", loader_workers=0, device="cpu")
    return root, synth


def truth_in_order(root, synth) -> pl.DataFrame:
    r = Root(root)
    keys = pl.concat([pl.read_parquet(r.meta_path(s), columns=["__key__"]) for s in r.shard_names("train")])
    return keys.join(pl.read_parquet(synth / "ground_truth.parquet", columns=["__key__", "is_noisy", "noise"]), on="__key__", how="left", maintain_order="left")


def test_noise_command_quality_resume_cleanlab_select_and_audit(mixed_root, tmp_path, wv_cli, last_json, quiet_bars):
    import shutil

    root = Path(shutil.copytree(mixed_root[0], tmp_path / "root"))
    result = wv_cli("score", "noise", root, "--features", "cnn", "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["components"] == {"probe": {"group": "image", "column": "p_label"}}
    truth = truth_in_order(root, mixed_root[1])
    scores = sidecars.read_scores(Root(root), "noise", split="train").collect()
    y = truth["is_noisy"].to_numpy()
    assert roc_auc_score(y, scores["p_noisy"].to_numpy()) > 0.93  # measured 0.99
    assert f1_score(y, scores["noisy"].to_numpy()) > 0.7  # measured 0.85
    assert {"p_noisy", "noisy", "p_text_off", "reason", "c_probe"} <= set(scores.columns)
    assert set(scores.filter("noisy")["reason"].unique()) == {"probe"}

    again = last_json(wv_cli("score", "noise", root, "--features", "cnn", "--folds", "3", "--json").stdout)
    assert again["shards_written"] == 0 and again["probe"]["shards_written"] == 0  # resumed: nothing redone

    issues = wv_cli("score", "labelissues", root, "--features", "cnn", "--folds", "3", "--json")
    assert issues.exit_code == 0, issues.output
    assert last_json(issues.stdout)["probe"]["shards_written"] == 0  # the same out-of-fold probe, reused
    flagged = sidecars.read_scores(Root(root), "labelissues", split="train", columns=["__key__", "label_issue"]).collect()["label_issue"]  # asking for the key too is fine
    assert f1_score(y, flagged.to_numpy()) > 0.7  # measured 0.87

    selected = wv_cli("select", root, "--drop", "noise.noisy", "--max-drop-fraction", "1", "--min-per-class", "0", "--json")
    assert selected.exit_code == 0, selected.output
    assert last_json(selected.stdout)["dropped"] == int(scores["noisy"].sum())
    audit = wv_cli("audit", root, "--out", tmp_path / "audit", "--json")
    assert audit.exit_code == 0, audit.output
    page = next((tmp_path / "audit" / "classes").glob("*.html")).read_text()
    assert "noise.reason" in page and "noise.c_probe" in page  # the cards say which evidence called each sample noisy


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_no_evidence_is_one_sentence_and_writes_nothing(root_copy, wv_cli):
    before = tree_hash(root_copy)
    result = wv_cli("score", "noise", root_copy)
    assert result.exit_code == 2
    assert "no evidence" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tree_hash(root_copy) == before


def test_text_evidence_only(root_copy, synth_v1, wv_cli, last_json):
    from wv.curate.lda import LdaOptions, score_lda

    score_lda(root_copy, LdaOptions(topics=6, passes=4, no_below=1), progress=False)
    result = wv_cli("score", "noise", root_copy, "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["components"] == {"lda": {"group": "text", "column": "similarity"}} and figures["probe"] is None
    scores = sidecars.read_scores(Root(root_copy), "noise", split="train").collect()
    assert scores["p_noisy"].equals(scores["p_text_off"].fill_null(float("nan")), check_names=False) or np.allclose(scores["p_noisy"].to_numpy(), scores["p_text_off"].to_numpy())
    y = truth_in_order(root_copy, synth_v1)["is_noisy"].fill_null(False).to_numpy()
    assert roc_auc_score(y, scores["p_noisy"].to_numpy()) > 0.85  # measured 0.93
