"""`wv pretrain`: the Sinkhorn layer, the three tasks on tiny roots and shards (loss falls, P recovered
above chance, keyword draws balanced), torchrun with two processes, and checkpoints in the wv format."""

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from wv.curate.keywords import INFO_FILE, VOCABULARY_FILE
from wv.curate.lda import LdaOptions, score_lda
from wv.models import load_checkpoint, read_checkpoint
from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth
from wv.train.permutation import cut_tiles, permutation_set, shuffle_tiles
from wv.train.sinkhorn import log_sinkhorn

TINY = ("--arch", "tinycnn", "--width", "16", "--workers", "0", "--log-every", "2", "--batch-size", "16")
ENV = {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def test_sinkhorn_is_doubly_stochastic_and_its_gradient_is_right():
    torch.manual_seed(0)
    scores = torch.randn(4, 6, 6, dtype=torch.float64) * 2
    s = log_sinkhorn(scores, iterations=100).exp()
    assert torch.allclose(s.sum(dim=-1), torch.ones(4, 6, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(s.sum(dim=-2), torch.ones(4, 6, dtype=torch.float64), atol=1e-5)
    huge = log_sinkhorn(torch.full((1, 3, 3), 1e4, dtype=torch.float64) + torch.eye(3, dtype=torch.float64) * 1e4, 30)
    assert torch.isfinite(huge).all()  # log space: no overflow
    small = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: log_sinkhorn(q, iterations=5, temperature=0.7), (small,))


def test_tiles_shuffled_and_put_back():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    tiles = cut_tiles(images, 3)
    assert tiles.shape == (2, 9, 3, 2, 2) and torch.equal(tiles[0, 5], images[0, :, 2:4, 4:6])  # row 1, column 2
    perms = torch.from_numpy(permutation_set(9, 2, seed=0))
    shuffled, target = shuffle_tiles(tiles, perms)
    assert torch.equal(torch.einsum("bjk,bk...->bj...", target, tiles), shuffled)  # P applied to the tiles
    sets = permutation_set(4, 24, seed=3)
    assert len({tuple(p) for p in sets}) == 24 and np.array_equal(sets, permutation_set(4, 24, seed=3))


# -- a root with text scores ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    """6 classes x 24 train images + 4 val each, 32 px; lda and label_weights scored; keywords written from
    the meta text over a vocabulary of words in 3 to 40% of documents (what `wv score keywords` keeps)."""
    base = tmp_path_factory.mktemp("pretrain")
    write_synth(base / "synth", SynthOptions(classes=6, per_class=24, noise=0.1, val_per_class=4, width=32, height=32, seed=5))
    for split in ("train", "val"):
        build(base / "synth", base / "root", BuildOptions(split=split, shard_size=40), workers=1, progress=False)
    root = Root(base / "root")
    score_lda(root.path, LdaOptions(topics=6, passes=2, no_below=2), progress=False)
    meta = pl.concat([pl.read_parquet(root.meta_path(s)) for s in root.shard_names("train")])
    words = [sorted({w for w in (text or "").lower().split() if w.isalpha() and len(w) > 3}) for text in meta["text"].to_list()]
    counted = Counter(w for ws in words for w in ws)
    kept = sorted(w for w, n in counted.items() if 3 <= n <= 0.4 * len(words))
    vocabulary = pl.DataFrame({"word": kept, "docs": [counted[w] for w in kept]}, schema={"word": pl.String, "docs": pl.Int64})
    keep = set(vocabulary["word"])
    folder = root.model_dir("keywords")
    folder.mkdir(parents=True)
    vocabulary.write_parquet(folder / VOCABULARY_FILE)
    (folder / INFO_FILE).write_text(json.dumps({"vocabulary_id": "test", "words": vocabulary.height}))
    at = 0
    for shard in root.shard_names("train"):
        keys = sidecars.shard_keys(root, shard)
        mine = [[w for w in ws if w in keep] for ws in words[at : at + keys.len()]]
        at += keys.len()
        sidecars.write_scores(root, "keywords", shard, pl.DataFrame({"__key__": keys, "keywords": mine}, schema={"__key__": pl.String, "keywords": pl.List(pl.String)}))
    return root.path


def test_keywords_task_learns_and_balances_its_draws(text_root, tmp_path, wv_cli, last_json):
    from wv.train.web_targets import KeywordTargets

    targets = KeywordTargets(text_root, "train")
    counts = targets.keyword_counts()
    weights = targets.draw_weights(balance=True)
    assert (weights[counts == 0] == 0).all() and (weights[counts > 0] > 0).all()
    rare = targets.docs.argmin()
    owners = targets(torch.arange(targets.rows.size), "cpu")[:, rare].nonzero()[:, 0].numpy()
    assert weights[owners].mean() > weights[counts > 0].mean()  # rare keywords drawn more

    out = tmp_path / "wt"
    result = wv_cli("pretrain", "--task", "keywords", "--shards", text_root, *TINY, "--image-size", "32", "--epochs", "3", "--lr", "0.05", "--holdout", "0.15", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert summary["task"] == "keywords" and summary["final_loss"] < summary["first_loss"]
    assert summary["skipped_without_keyword"] == int((counts == 0).sum()) and summary["held_out"] > 0
    assert 0 < summary["val_map"] <= 1 and summary["max_repeat"] == 8
    model, checkpoint = load_checkpoint(out / "checkpoint.pt")  # a wv checkpoint: the backbone + the keyword layer
    assert checkpoint["classes"] == targets.words and checkpoint["task"]["name"] == "keywords"
    assert_init_continues(text_root, out / "checkpoint.pt", tmp_path / "ft", wv_cli, last_json)


def assert_init_continues(root, checkpoint, out, wv_cli, last_json):
    """`wv train --init` from a pre-training: the whole body loads, the class head starts afresh."""
    result = wv_cli("train", "--shards", root, *TINY, "--image-size", "32", "--epochs", "1", "--init", checkpoint, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    init = last_json(result.stdout)["init"]
    assert init["body_loaded"] == init["body_tensors"] > 0 and init["head"] == "reinitialised"


def test_label_weights_task_learns(text_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "lw"
    result = wv_cli("pretrain", "--task", "label-weights", "--shards", text_root, "--val", text_root, *TINY, "--image-size", "32", "--epochs", "3", "--lr", "0.05", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert summary["final_loss"] < summary["first_loss"] and summary["val_top1"] > 1 / 6
    assert read_checkpoint(out / "checkpoint.pt")["classes"] == [c["synset"] for c in Root(text_root).classes()]
    assert_init_continues(text_root, out / "checkpoint.pt", tmp_path / "ft", wv_cli, last_json)  # same classes, new head


def test_label_weighted_loss_is_the_weighted_sum_of_cross_entropies():
    from wv.train.tasks import LabelWeightTask

    logits = torch.randn(2, 5)
    labels, weights = torch.tensor([[1, 3], [0, 0]]), torch.tensor([[0.75, 0.25], [1.0, 0.0]])
    loss, _ = LabelWeightTask.loss(None, logits, (labels, weights), {}, torch.ones(2), 0.0, 0)
    log_p = logits.log_softmax(dim=1)
    expected = -(0.75 * log_p[0, 1] + 0.25 * log_p[0, 3] + log_p[1, 0]) / 2
    assert torch.isclose(loss, expected)


# -- permutation on plain shards --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ramp_shards(tmp_path_factory):
    """Plain webdataset shards (no labels) of 32 px images whose red rises downwards and green rightwards:
    where a tile came from shows in its colours, as the sky and the ground show it in photographs."""
    folder = tmp_path_factory.mktemp("ramps")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32] / 31.0
    for shard in range(2):
        with tarfile.open(folder / f"ramp-{shard:06d}.tar", "w") as tar:
            for i in range(96):
                pixels = np.stack([y * 200 + rng.uniform(0, 55), x * 200 + rng.uniform(0, 55), rng.uniform(0, 255, (32, 32))], -1)
                data = io.BytesIO()
                Image.fromarray(pixels.astype(np.uint8)).save(data, format="PNG")
                info = tarfile.TarInfo(f"s{shard}i{i:04d}.png")
                info.size = data.tell()
                data.seek(0)
                tar.addfile(info, data)
    return folder


def test_permutation_task_recovers_the_permutation(ramp_shards, text_root, tmp_path, wv_cli, last_json):
    shards = str(ramp_shards / "ramp-{000000..000001}.tar")
    out = tmp_path / "vpl"
    result = wv_cli(
        "pretrain",
        "--task",
        "permutation",
        "--shards",
        shards,
        "--val",
        shards,
        *TINY,
        "--image-size",
        "32",
        "--grid",
        "2",
        "--permutations",
        "24",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["val_tile_accuracy"] > 0.6 and summary["chance_tile_accuracy"] == 0.25  # chance: 1 tile in 4
    assert summary["val_permutation_accuracy"] > 3 / 24
    model, checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["input"]["size"] == 16 and checkpoint["task_head"]["weight"].shape == (16, 4 * 256)
    assert_init_continues(text_root, out / "checkpoint.pt", tmp_path / "ft", wv_cli, last_json)


def test_permutation_under_torchrun(ramp_shards, tmp_path):
    shards = str(ramp_shards / "ramp-{000000..000001}.tar")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "wv",
        "pretrain",
        "--task",
        "permutation",
        "--shards",
        shards,
        *TINY,
        "--image-size",
        "32",
        "--grid",
        "2",
        "--permutations",
        "24",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "ddp"),
        "--json",
    ]
    done = subprocess.run(command, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["parameters_equal_across_ranks"] and math.isfinite(summary["final_loss"])


def test_pretrain_refuses_bad_input_in_one_sentence(text_root, ramp_shards, tmp_path, wv_cli):
    shards = str(ramp_shards / "ramp-{000000..000001}.tar")
    cases = [
        (("--task", "keywords", "--shards", shards), "needs a dataset root"),
        (("--task", "permutation", "--shards", shards, "--grid", "2", "--permutations", "25"), "more than the 24 orders"),
        (("--task", "permutation", "--shards", shards, "--grid", "4", "--image-size", "32"), "fewer than the 16"),
        (("--task", "keywords", "--shards", text_root, "--holdout", "1.5"), "--holdout must be"),
        (("--task", "permutation", "--shards", shards, "--temperature", "0"), "--temperature must be"),
    ]
    for args, words in cases:
        out = tmp_path / "refused"
        result = wv_cli("pretrain", *args, "--arch", "tinycnn", "--out", out)
        assert result.exit_code == 2 and words in result.output, (args, result.output)
        assert not out.exists()
    root = Path(shutil.copytree(text_root, tmp_path / "root"))
    shutil.rmtree(root / "scores" / "label_weights")
    result = wv_cli("pretrain", "--task", "label-weights", "--shards", root, "--arch", "tinycnn", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "wv score lda" in result.output
