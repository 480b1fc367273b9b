"""Pseudo-labels and ensembles: `wv relabel` on planted label flips (how many flips get their true class
back), `wv train --labels pseudo.label` / `wv stream --labels` on them, and the ensembles of `wv eval`
and `wv score confidence` (each model and the mean of their probabilities, checked by hand)."""

import io
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from image_data import noisy_root, trained_checkpoint, truth_by_shard_order
from PIL import Image

from wv.curate.relabel import pseudo_labels
from wv.models import eval_transform, load_checkpoint, read_checkpoint
from wv.shards import sidecars
from wv.shards.read import iter_samples, shard_urls
from wv.shards.root import Root
from wv.train.crops import EvalCrops, normalise

TINY = ("--arch", "tinycnn", "--width", "16", "--image-size", "32", "--workers", "0", "--batch-size", "32")
FLIPS_RECOVERED_FLOOR = 0.8  # measured 0.97 (72 of 74 flips at --min-confidence 0.5; synth seed 3, model seeds 0 and 1)


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    source, synth = noisy_root(tmp_path_factory)
    return shutil.copytree(source, tmp_path / "root"), synth


@pytest.fixture
def models(tmp_path_factory):
    """Two TinyCNNs trained on the noisy labels with different seeds."""
    return trained_checkpoint(tmp_path_factory, seed=0), trained_checkpoint(tmp_path_factory, epochs=4, seed=1)


def variant(path, out, *, reverse_classes: bool = False, size: int | None = None, classes: list | None = None):
    """A copy of a checkpoint with its classes (and classifier rows) in reverse order, another input size,
    or another class list."""
    checkpoint = read_checkpoint(path)
    if reverse_classes:
        checkpoint["classes"] = checkpoint["classes"][::-1]
        for name in ("fc.weight", "fc.bias"):
            checkpoint["model"][name] = checkpoint["model"][name].flip(0).contiguous()
    if size:
        checkpoint["input"] = {**checkpoint["input"], "size": size}
    if classes:
        checkpoint["classes"] = classes
    torch.save(checkpoint, out)
    return out


def by_hand(root, checkpoints, crops: int | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """(mean probabilities [N, classes] in label order, labels, each model's probabilities) over the train
    shards, one model after the other, each at its own input size: `wv eval`'s centre crop (crops=1) or
    the checkpoint's evaluation preprocessing (crops=None: `wv relabel`, `wv score confidence`)."""
    synsets = [c["synset"] for c in sorted(Root(root).classes(), key=lambda c: c["label"])]
    samples = list(iter_samples(shard_urls(root, "train")))
    labels = np.array([int(s["cls"]) for s in samples])
    each = []
    with torch.no_grad():
        for path in checkpoints:
            net, checkpoint = load_checkpoint(path)
            spec = checkpoint["input"]
            pictures = [Image.open(io.BytesIO(s["jpg"])).convert("RGB") for s in samples]
            if crops is None:
                probs = net(torch.stack([eval_transform(spec)(p) for p in pictures])).softmax(1)
            else:
                images = torch.stack([EvalCrops(spec["size"], crops)(p) for p in pictures])
                probs = net(normalise(images.flatten(0, 1), spec["mean"], spec["std"])).softmax(1).view(len(samples), crops, -1).mean(1)
            each.append(probs[:, [checkpoint["classes"].index(s) for s in synsets]].numpy())
    return np.mean(each, axis=0), labels, each


def test_pseudo_labels_core():
    probs = np.array([[0.95, 0.05], [0.3, 0.7], [0.1, 0.9], [0.92, 0.08]], dtype=np.float32)
    out = pseudo_labels(probs, np.array([0, 0, 0, -1]), 0.9)
    assert out["label"].tolist() == [0, -1, 1, 0] and out["predicted"].tolist() == [0, 1, 1, 0]
    assert out["changed"].tolist() == [False, False, True, True]
    np.testing.assert_allclose(out["probability"], [0.95, 0.7, 0.9, 0.92])
    assert out["p_label"][:3].tolist() == pytest.approx([0.95, 0.3, 0.1]) and np.isnan(out["p_label"][3])


def test_relabel_recovers_planted_flips_and_trains_on_them(root, models, tmp_path, wv_cli, last_json):
    root, synth = root
    args = ("relabel", root, "--model", models[0], "--model", models[1], "--min-confidence", "0.5", "--loader-workers", "0", "--json")
    result = wv_cli(*args)
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["samples"] == 480 and figures["shards_written"] == 8 and figures["models"] == [str(m) for m in models]
    scores = sidecars.read_scores(Root(root), "pseudo", split="train").collect()
    assert scores.columns == ["__key__", "label", "predicted", "probability", "p_label", "changed", "shard"]
    assert [scores.schema[c] for c in ("label", "predicted", "probability", "changed")] == [pl.Int32, pl.Int32, pl.Float32, pl.Boolean]
    # the ensemble: the mean of the two models' probabilities, by hand
    mean, labels, _ = by_hand(root, models)
    np.testing.assert_allclose(scores["probability"].to_numpy(), mean.max(1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores["p_label"].to_numpy(), mean[np.arange(len(labels)), labels], rtol=1e-4, atol=1e-6)
    confident = mean.max(1) >= 0.5
    assert (scores["label"].is_not_null().to_numpy() == confident).all()
    assert (scores["changed"].to_numpy() == (confident & (mean.argmax(1) != labels))).all()
    assert figures["pseudo_labelled"] == confident.sum() and figures["changed"] == scores["changed"].sum()
    # the planted flips: another class's image filed under this class; the pseudo-label should be that class
    truth = truth_by_shard_order(root, synth).join(pl.read_parquet(synth / "ground_truth.parquet", columns=["__key__", "true_label"]), on="__key__", how="left", maintain_order="left")
    flips = (truth["noise"] == "flip").to_numpy()
    recovered = float((scores["label"].to_numpy()[flips] == truth["true_label"].to_numpy()[flips]).mean())
    print(f"flipped samples: {flips.sum()}, pseudo-label = true label: {recovered:.3f}")
    assert flips.sum() >= 50 and recovered >= FLIPS_RECOVERED_FLOOR
    clean = (truth["noise"] == "clean").to_numpy()
    assert scores["changed"].to_numpy()[clean].mean() <= 0.05  # clean samples keep their label
    # a re-run resumes; other models are refused
    again = last_json(wv_cli(*args).stdout)
    assert again["shards_written"] == 0 and again["shards_skipped"] == 8
    other = wv_cli("relabel", root, "--model", models[0], "--loader-workers", "0")
    assert other.exit_code == 2 and "other options" in other.stderr
    # the sampler trains on the pseudo-label where there is one, the web label elsewhere
    plan = last_json(wv_cli("stream", root, "--labels", "pseudo.label", "--batch-size", "32", "--json").stdout)
    pseudo = scores["label"].fill_null(-1).to_numpy()
    assert plan["labels"]["relabelled"] == int(((pseudo >= 0) & (pseudo != labels)).sum()) > 50
    expected = np.bincount(np.where(pseudo >= 0, pseudo, labels), minlength=6)
    assert [c["samples"] for c in sorted(plan["classes"], key=lambda c: c["label"])] == expected.tolist()
    run = tmp_path / "run"
    trained = wv_cli("train", "--shards", root, "--labels", "pseudo.label", *TINY, "--epochs", "1", "--out", run, "--json")
    assert trained.exit_code == 0, trained.output
    assert (run / "checkpoint.pt").is_file()


def test_audit_shows_the_relabelled_samples_and_the_labels_column_is_checked(root, models, tmp_path, wv_cli, last_json):
    root, _ = root
    assert wv_cli("relabel", root, "--model", models[0], "--loader-workers", "0").exit_code == 0
    scores = sidecars.read_scores(Root(root), "pseudo", split="train").collect()
    meta = pl.concat([pl.read_parquet(Root(root).meta_path(s), columns=["label"]) for s in Root(root).shard_names("train")])
    assert wv_cli("select", root, "--drop", "pseudo.p_label < 0.05").exit_code == 0
    report = tmp_path / "report"
    figures = last_json(wv_cli("audit", root, "--out", report, "--per-class", "4", "--workers", "1", "--json").stdout)
    changed = scores.filter(pl.col("changed"))
    assert figures["relabel"]["changed"] == changed.height > 0 and figures["relabel"]["name"] == "pseudo"
    html = (report / "relabel.html").read_text()
    per_class = changed.group_by("label").len()["len"].to_list()
    assert html.count("<article") == figures["relabel"]["shown"] == sum(min(n, 4) for n in per_class)
    web = dict(zip(scores["__key__"], meta["label"]))
    new = dict(zip(scores["__key__"], scores["label"]))
    for key in re.findall(r'data-key="([^"]+)"', html):  # every card is a changed sample, its web label beside its new one
        assert new[key] is not None and new[key] != web[key]
    for thumb in re.findall(r'src="(thumbs/[^"]+)"', html):
        assert (report / thumb).is_file()
    assert 'href="relabel.html"' in (report / "index.html").read_text()
    again = last_json(wv_cli("audit", root, "--out", report, "--relabel", "none", "--workers", "1", "--json").stdout)
    assert "relabel" not in again and not (report / "relabel.html").exists()
    assert wv_cli("audit", root, "--out", report, "--relabel", "lda").exit_code == 2
    shard = Root(root).shard_names("train")[3]
    frame = pl.read_parquet(Root(root).score_path("pseudo", shard))
    frame.with_columns(pl.lit(7, dtype=pl.Int32).alias("label")).write_parquet(Root(root).score_path("pseudo", shard))
    cases = [
        (("--labels", "pseudo.label"), "holds class 7, which is not one of the 6 classes"),
        (("--labels", "pseudo.probability"), "must hold class numbers"),
        (("--labels", "pseudo.nothing"), "has no column 'nothing'"),
        (("--labels", "nothing.label"), "there is no score 'nothing'"),
        (("--labels", "label"), "SCORE.COLUMN"),
    ]
    for args, message in cases:
        for command in (("stream", root), ("train", "--shards", root, *TINY, "--out", tmp_path / "run")):
            result = wv_cli(*command, *args)
            assert result.exit_code == 2 and message in result.stderr, (command, args, result.output)
            assert not (tmp_path / "run").exists()


def test_relabel_refuses_models_of_other_classes(root, models, tmp_path, wv_cli):
    root, _ = root
    other = variant(models[0], tmp_path / "other.pt", classes=[f"n0000000{i}" for i in range(6)])
    result = wv_cli("relabel", root, "--model", models[0], "--model", other, "--loader-workers", "0")
    assert result.exit_code == 2 and "was trained on other classes than this root's" in result.stderr, result.output
    assert not (Path(root) / "scores").exists()


def test_eval_reports_each_model_and_the_ensemble(root, models, tmp_path, wv_cli, last_json):
    root, _ = root
    small = variant(models[1], tmp_path / "small.pt", size=40)  # another input size: its own crops
    singles = [
        last_json(wv_cli("eval", "--shards", root, "--split", "train", "--checkpoint", m, "--workers", "0", "--out", tmp_path / f"e{i}", "--json").stdout) for i, m in enumerate((models[0], small))
    ]
    result = wv_cli("eval", "--shards", root, "--split", "train", "--checkpoint", models[0], "--checkpoint", small, "--workers", "0", "--out", tmp_path / "ens", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert [m["top1"] for m in figures["models"]] == [s["top1"] for s in singles]
    assert [m["top5"] for m in figures["models"]] == [s["top5"] for s in singles]
    mean, labels, each = by_hand(root, (models[0], small), crops=1)
    assert [m["top1"] for m in figures["models"]] == pytest.approx([(p.argmax(1) == labels).mean() for p in each])
    assert figures["top1"] == pytest.approx((mean.argmax(1) == labels).mean()) and figures["n"] == 480
    for line in ("model 1", "model 2", "ensemble of 2"):
        assert line in result.stdout
    # a model whose classes are in another order is aligned by synset: the ensemble of a model with itself
    flipped = variant(models[0], tmp_path / "flipped.pt", reverse_classes=True)
    same = last_json(wv_cli("eval", "--shards", root, "--split", "train", "--checkpoint", models[0], "--checkpoint", flipped, "--workers", "0", "--out", tmp_path / "same", "--json").stdout)
    assert same["top1"] == singles[0]["top1"] and same["models"][1]["top1"] == singles[0]["top1"]
    other = variant(models[0], tmp_path / "other.pt", classes=[f"n0000000{i}" for i in range(6)])
    refused = wv_cli("eval", "--shards", root, "--split", "train", "--checkpoint", models[0], "--checkpoint", other, "--out", tmp_path / "no")
    assert refused.exit_code == 2 and "an ensemble's models must share one class list" in refused.stderr


def test_confidence_of_several_checkpoints_averages_their_probabilities(root, models, tmp_path, wv_cli):
    root, _ = root
    flipped = variant(models[1], tmp_path / "flipped.pt", reverse_classes=True, size=40)
    for name, chosen in (("a", [models[0]]), ("b", [models[1]]), ("ab", [models[0], flipped])):
        args = [a for m in chosen for a in ("--model", m)]
        result = wv_cli("score", "confidence", root, *args, "--name", name, "--loader-workers", "0")
        assert result.exit_code == 0, result.output
    read = {n: sidecars.read_scores(Root(root), n, split="train").collect() for n in ("a", "b", "ab")}
    mean, labels, each = by_hand(root, (models[0], flipped))
    np.testing.assert_allclose(read["a"]["p_label"].to_numpy(), each[0][np.arange(len(labels)), labels], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(read["ab"]["p_label"].to_numpy(), mean[np.arange(len(labels)), labels], rtol=1e-4, atol=1e-6)
    assert (read["ab"]["top1"].to_numpy() == mean.argmax(1)).all()
    clip = wv_cli("score", "confidence", root, "--model", models[0], "--model", "ViT-B-32", "--name", "c", "--loader-workers", "0")
    assert clip.exit_code == 2 and "several --model must each be a `wv train` checkpoint" in clip.stderr
