"""`wv score lda`: text cleaning, the fitted model, sidecars joined back to their samples, quality on
planted noise, label weights, resume, another split with --model, and texts or classes without words.

The synthetic set (conftest `synth_v1`: 6 classes, 30% noise) is small, so the model here has 20
topics and 5 passes; the quality bound is seeded and would fail for a broken method (random scores
give an AUROC near 0.5).
"""

import shutil

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from wv.curate import lda, lda_model, lda_saved
from wv.curate.text import FLAG_EMPTY, FLAG_NO_WORDS, FLAG_NON_ENGLISH, clean_tokens, text_flag
from wv.shards import sidecars
from wv.shards.root import Root

SMALL = ["--topics", "20", "--passes", "5", "--no-below", "3"]


@pytest.fixture(scope="module")
def lda_root(built_root, tmp_path_factory, wv_cli_module):
    """built_root scored with `wv score lda` (read-only here; copy it to change it)."""
    root = shutil.copytree(built_root, tmp_path_factory.mktemp("lda") / "root")
    result = wv_cli_module("score", "lda", root, *SMALL, "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def wv_cli_module():
    from click.testing import CliRunner

    from wv.cli import main

    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def joined(root, synth) -> pl.DataFrame:
    """lda + label_weights sidecars of every train shard, with labels, meta status and ground truth."""
    root = Root(root)
    scores = sidecars.read_scores(root, lda.NAME, split="train").collect()
    weights = sidecars.read_scores(root, lda.LABEL_WEIGHTS, split="train").collect()
    manifest = root.manifest("train").select("__key__", "label", "meta").collect()
    truth = pl.read_parquet(synth / "ground_truth.parquet").select("__key__", "is_noisy", "text_kind")
    return scores.join(weights, on=["__key__", "shard"]).join(manifest, on="__key__").join(truth, on="__key__")


# -- text cleaning ----------------------------------------------------------------------------------
def test_cleaning_lowercases_keeps_letters_drops_stop_and_web_words_and_stems():
    tokens = clean_tokens("Photo of the Running DOGS at www.flickr.com, image_2012.JPG #puppies")
    assert tokens == ["run", "dog", "puppi"]
    assert clean_tokens(None) == [] and clean_tokens("") == []


@pytest.mark.parametrize(
    "text, flag",
    [
        ("", FLAG_EMPTY),
        ("   ", FLAG_EMPTY),
        (None, FLAG_EMPTY),
        ("的一是不了人我在有他这中大来上", FLAG_NON_ENGLISH),
        ("Привет мир", FLAG_NON_ENGLISH),
        ("the and of 2012 www.google.com", FLAG_NO_WORDS),
        ("a red fox", None),
    ],
)
def test_text_flags(text, flag):
    assert text_flag(text, clean_tokens(text)) == flag


# -- the scores ---------------------------------------------------------------------------------------
def test_sidecars_have_the_shards_keys_in_order(lda_root):
    root = Root(lda_root)
    for shard in root.shard_names("train"):
        keys = sidecars.shard_keys(root, shard)
        for name in (lda.NAME, lda.LABEL_WEIGHTS):
            assert pl.read_parquet(root.score_path(name, shard))["__key__"].equals(keys)
        theta = sidecars.read_features(root, lda.NAME, shard)
        assert theta.shape == (keys.len(), 20) and theta.dtype == np.float16


def test_quality_on_planted_noise(lda_root, synth_v1):
    """Noisy samples (flips, outliers) are far from their class's mean topics: AUROC >= 0.8, and
    dropping the lowest 10% per class drops mostly noisy samples."""
    frame = joined(lda_root, synth_v1).filter(pl.col("similarity").is_not_null())
    auroc = roc_auc_score(frame["is_noisy"].to_numpy(), -frame["similarity"].to_numpy())
    assert auroc >= 0.8
    ranked = frame.with_columns(pl.col("similarity").rank("ordinal").over("label").alias("rank"), pl.len().over("label").alias("n"))
    dropped = ranked.filter(pl.col("rank") <= (pl.col("n") * 0.1).floor())
    assert dropped.height >= 10 and dropped["is_noisy"].mean() >= 0.7


def test_flags_follow_the_text(lda_root, synth_v1):
    frame = joined(lda_root, synth_v1)
    ok = frame.filter(pl.col("meta") == "ok")
    assert set(ok.filter(pl.col("text_kind") == "empty")["text_flag"]) == {FLAG_EMPTY}
    assert set(ok.filter(pl.col("text_kind") == "foreign")["text_flag"]) == {FLAG_NON_ENGLISH}
    assert set(frame.filter(pl.col("meta") != "ok")["text_flag"]) == {FLAG_EMPTY}  # missing meta: no text
    scored = frame.filter(pl.col("text_flag").is_null())
    assert scored["similarity"].null_count() == 0 and scored.height >= 0.8 * frame.height
    assert frame.filter(pl.col("text_flag").is_not_null())["similarity"].null_count() == frame["text_flag"].is_not_null().sum()
    assert scored["similarity"].is_between(0, 1.0001).all() and (scored["tokens"] > 0).all()
    assert scored["top_topics"].list.len().eq(3).all() and (scored["top_weights"].list.first() >= scored["top_weights"].list.last()).all()


def test_label_weights(lda_root, synth_v1):
    frame = joined(lda_root, synth_v1).filter(pl.col("text_flag").is_null())
    assert frame["label_topk"].list.len().eq(5).all()
    assert np.allclose(frame["weight_topk"].list.sum().to_numpy(), 1.0, atol=1e-4)
    assert (frame["sim_topk"].list.first() >= frame["sim_topk"].list.get(1)).all()
    weights, classes, sims = frame["weight_topk"].to_list(), frame["label_topk"].to_list(), frame["sim_topk"].to_list()
    labels = frame["label"].to_list()
    own = [w[k.index(label)] if label in k else 0.0 for w, k, label in zip(weights, classes, labels)]
    assert np.allclose(frame["label_weight"].to_numpy(), own)
    listed = [s[k.index(label)] for s, k, label in zip(sims, classes, labels) if label in k]
    in_list = [sim for sim, k, label in zip(frame["similarity"].to_list(), classes, labels) if label in k]
    assert np.allclose(listed, in_list, atol=1e-5)
    clean = frame.filter(~pl.col("is_noisy"))
    assert (clean["label_topk"].list.first() == clean["label"]).mean() >= 0.85  # the own class ranks first for clean text
    assert joined(lda_root, synth_v1).filter(pl.col("text_flag").is_not_null())["label_topk"].null_count() > 0


def test_saved_model_and_class_means(lda_root):
    folder = Root(lda_root).model_dir(lda.NAME)
    saved = lda.open_model(folder)
    assert saved.info["topics"] == 20 and saved.info["class_means"]["classes_with_text"] == 6
    means = np.load(folder / lda_saved.MEANS_FILE)
    assert means.shape == (6, 20) and np.allclose(means.sum(axis=1), 1.0, atol=1e-3)
    from gensim.models import LdaModel  # a plain gensim model: loads without wv

    assert LdaModel.load(str(folder / lda_saved.MODEL_FILE)).num_topics == 20


# -- runs: resume, refuse, determinism, another split ---------------------------------------------------------
def test_rerun_resumes_and_refuses_other_options(lda_root, tmp_path, wv_cli, last_json):
    root = shutil.copytree(lda_root, tmp_path / "root")
    shard = Root(root).shard_names("train")[1]
    before = pl.read_parquet(Root(root).score_path(lda.NAME, shard))
    Root(root).score_path(lda.NAME, shard).unlink()  # as if killed before this shard was written
    result = wv_cli("score", "lda", root, *SMALL, "--json")
    figures = last_json(result.stdout)
    assert result.exit_code == 0 and not figures["fitted"] and figures["shards_written"] == 1
    assert pl.read_parquet(Root(root).score_path(lda.NAME, shard)).equals(before)

    result = wv_cli("score", "lda", root, "--topics", "30", "--passes", "5", "--no-below", "3")
    assert result.exit_code == 2 and "other options (topics)" in result.stderr and "Traceback" not in result.output
    result = wv_cli("score", "lda", root, *SMALL, "--similarity", "dot")
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_same_scores_for_any_worker_count(lda_root, built_root, tmp_path, wv_cli, last_json):
    root = shutil.copytree(built_root, tmp_path / "root")
    figures = last_json(wv_cli("score", "lda", root, *SMALL, "--workers", "1", "--json").stdout)
    assert figures["model_id"] == lda.open_model(Root(lda_root).model_dir(lda.NAME)).model_id
    for shard in Root(root).shard_names("train"):
        assert pl.read_parquet(Root(root).score_path(lda.NAME, shard)).equals(pl.read_parquet(Root(lda_root).score_path(lda.NAME, shard)))


def test_dot_similarity_is_the_plain_product(lda_root):
    theta = np.array([[0.5, 0.5], [1.0, 0.0]], dtype=np.float32)
    means = np.array([[0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
    assert np.allclose(lda_model.similarities(theta, means, "dot"), [[0.5, 0.5], [0.5, 0.0]])
    assert np.allclose(lda_model.similarities(theta, means, "cosine"), [[1.0, 2**-0.5], [2**-0.5, 0.0]])


# -- the model on plain token lists, no dataset root ---------------------------------------------------
def test_the_model_fits_and_scores_plain_token_lists():
    """lda_model alone: two themes in a list of texts -> topics, class means, similarities, flags and weights."""
    animals, machines = "dog cat horse cow sheep goat", "engine motor gear wheel piston valve"
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(theme.split(), 6)) for theme in (animals, machines) for _ in range(30)]
    labels = np.repeat([0, 1], 30)
    documents = [clean_tokens(text) for text in texts]
    model, dictionary = lda_model.fit_topics(documents, lda.LdaOptions(topics=2, passes=20, no_below=1, seed=1))
    theta, bags = lda_model.infer_topics(model, dictionary, documents, seed=0)
    assert theta.shape == (60, 2) and np.allclose(theta.sum(axis=1), 1, atol=1e-5) and all(bags)
    present, sums, counts = lda_model.class_sums(labels, theta)
    means = lda_model.class_means(sums, counts)
    assert present.tolist() == [0, 1] and counts.tolist() == [30, 30]
    extra = ["", "zebra unicorn"]  # no text; words the model has never seen
    extra_theta, _ = lda_model.infer_topics(model, dictionary, [clean_tokens(t) for t in extra], seed=0)
    scores, weights = lda_model.score_frames([f"k{i}" for i in range(62)], np.concatenate([labels, [0, 1]]), texts + extra, np.concatenate([theta, extra_theta]), means, dictionary, "cosine", 1, 2)
    own = scores["similarity"].to_numpy()[:60]
    assert (own > 0.9).mean() > 0.9  # each text sits with its own theme's mean
    assert scores["text_flag"].to_list()[60:] == [FLAG_EMPTY, lda_model.FLAG_UNKNOWN_WORDS]
    assert scores["similarity"][60:].null_count() == 2 and weights["label_weight"][60:].null_count() == 2
    assert (weights["label_topk"].list.first()[:60].to_numpy() == labels).mean() > 0.9
    assert np.allclose(weights["weight_topk"].list.sum()[:60].to_numpy(), 1.0)


def test_the_model_on_token_lists_is_the_commands_model(lda_root):
    """fit_topics on the train texts, in shard order, fits the very model `wv score lda` fitted (same topics, bit for bit)."""
    import hashlib

    root = Root(lda_root)
    texts = pl.concat([pl.read_parquet(root.meta_path(s), columns=["text"]) for s in root.shard_names("train")])["text"]
    model, dictionary = lda_model.fit_topics([clean_tokens(t) for t in texts], lda.LdaOptions(topics=20, passes=5, no_below=3))
    saved = lda.open_model(root.model_dir(lda.NAME))
    assert len(dictionary) == saved.info["vocabulary"]
    assert hashlib.sha256(np.ascontiguousarray(model.expElogbeta).tobytes()).hexdigest()[:16] == saved.model_id


def test_val_split_with_the_fitted_model(lda_root, tmp_path, wv_cli, last_json):
    root = shutil.copytree(lda_root, tmp_path / "root")
    result = wv_cli("score", "lda", root, "--split", "val", *SMALL)
    assert result.exit_code == 2 and "--model" in result.stderr
    # Give two val samples web text: one of a class the model knows, one of a class it has no text for.
    val_shard = Root(root).shard_names("val")[0]
    meta = pl.read_parquet(Root(root).meta_path(val_shard))
    train_meta = pl.read_parquet(Root(root).meta_path(Root(root).shard_names("train")[0]))
    donor = train_meta.filter((pl.col("label") == 2) & (pl.col("text").str.len_chars() > 40))["text"][0]
    first = meta.with_row_index().filter(pl.col("label") == 2)["index"][0]
    meta = meta.with_columns(pl.when(pl.int_range(pl.len()) == first).then(pl.lit(donor)).otherwise(pl.col("text")).alias("text"))
    meta.write_parquet(Root(root).meta_path(val_shard))
    result = wv_cli("score", "lda", root, "--split", "val", "--model", Root(root).model_dir(lda.NAME), *SMALL, "--json")
    figures = last_json(result.stdout)
    assert result.exit_code == 0 and not figures["fitted"] and figures["scored"] == 1
    assert figures["flags"] == {FLAG_EMPTY: meta.height - 1}
    scores = pl.read_parquet(Root(root).score_path(lda.NAME, val_shard))
    assert scores["__key__"].equals(meta["__key__"]) and scores["similarity"][int(first)] > 0.3
    # The train sidecars made with the same model stay as they were.
    for shard in Root(root).shard_names("train"):
        assert pl.read_parquet(Root(root).score_path(lda.NAME, shard)).equals(pl.read_parquet(Root(lda_root).score_path(lda.NAME, shard)))


def test_one_sample_class_and_textless_class(built_root, tmp_path, wv_cli, last_json):
    """Class 0 has no text at all, class 1 a single text: nothing crashes; class 1's sample is its own mean."""
    root = Root(shutil.copytree(built_root, tmp_path / "root"))
    kept = None
    for shard in root.shard_names():
        meta = pl.read_parquet(root.meta_path(shard))
        blank = pl.col("label") == 0
        if shard.startswith("train"):
            ones = meta.with_row_index().filter((pl.col("label") == 1) & (pl.col("text").str.len_chars() > 30))
            if kept is None and ones.height:
                kept = ones["__key__"][0]
            blank = blank | ((pl.col("label") == 1) & (pl.col("__key__") != (kept or "")))
        meta.with_columns(pl.when(blank).then(pl.lit("")).otherwise(pl.col("text")).alias("text")).write_parquet(root.meta_path(shard))
    result = wv_cli("score", "lda", root.path, *SMALL, "--json")
    assert result.exit_code == 0, result.output
    scores = sidecars.read_scores(root, lda.NAME, split="train").collect().join(root.manifest("train").select("__key__", "label").collect(), on="__key__")
    assert scores.filter(pl.col("label") == 0)["text_flag"].unique().to_list() == [FLAG_EMPTY]
    single = scores.filter(pl.col("__key__") == kept)
    assert single["similarity"][0] == pytest.approx(1.0, abs=1e-3)
    info = lda.open_model(root.model_dir(lda.NAME)).info
    assert info["class_means"]["classes_with_text"] == 5
    # A val sample of the class without text: scored against no mean, flagged, not a crash.
    val_shard = root.shard_names("val")[0]
    meta = pl.read_parquet(root.meta_path(val_shard))
    donor = scores.filter(pl.col("label") == 3)["__key__"][0]
    donor_text = pl.concat([pl.read_parquet(root.meta_path(s)) for s in root.shard_names("train")]).filter(pl.col("__key__") == donor)["text"][0]
    meta = meta.with_columns(pl.when(pl.col("label") == 0).then(pl.lit(donor_text)).otherwise(pl.col("text")).alias("text"))
    meta.write_parquet(root.meta_path(val_shard))
    result = wv_cli("score", "lda", root.path, "--split", "val", "--model", root.model_dir(lda.NAME), *SMALL, "--json")
    assert result.exit_code == 0
    assert last_json(result.stdout)["flags"].get(lda_model.FLAG_NO_CLASS_MEAN) == int((meta["label"] == 0).sum())


def test_all_empty_text_is_one_clear_error(built_root, tmp_path, wv_cli):
    root = Root(shutil.copytree(built_root, tmp_path / "root"))
    for shard in root.shard_names("train"):
        meta = pl.read_parquet(root.meta_path(shard))
        meta.with_columns(pl.lit("").alias("text")).write_parquet(root.meta_path(shard))
    result = wv_cli("score", "lda", root.path, *SMALL)
    assert result.exit_code == 2 and "usable text" in result.stderr and "Traceback" not in result.output


def test_fit_sample_is_seeded(built_root):
    root = Root(built_root)
    plan = lda.fit_plan(root, lda.LdaOptions(fit_docs=50, seed=3))
    again = lda.fit_plan(root, lda.LdaOptions(fit_docs=50, seed=3))
    other = lda.fit_plan(root, lda.LdaOptions(fit_docs=50, seed=4))
    assert sum(len(rows) for _, rows in plan) == 50
    assert [(s, r.tolist()) for s, r in plan] == [(s, r.tolist()) for s, r in again] != [(s, r.tolist()) for s, r in other]
    sizes = dict(root.shards("train").select("name", "samples").iter_rows())
    assert all(rows.max() < sizes[shard] and (np.diff(rows) > 0).all() for shard, rows in plan)


def test_help_has_an_example(wv_cli):
    result = wv_cli("score", "lda", "--help")
    assert result.exit_code == 0 and "Example:" in result.output and "--model" in result.output
