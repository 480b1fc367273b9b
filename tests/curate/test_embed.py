"""`wv embed`: features per shard from a `wv train` checkpoint (penultimate layer) or an open_clip model,
decoded with the model's preprocessing; resume; decoding workers; disjoint shards under torchrun."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from image_data import noisy_root, tiny_clip, trained_checkpoint
from PIL import Image

from wv.models import eval_transform, load_checkpoint, penultimate
from wv.shards import sidecars
from wv.shards.read import iter_samples
from wv.shards.root import Root


@pytest.fixture
def root(tmp_path_factory, tmp_path):
    source, _ = noisy_root(tmp_path_factory)
    return shutil.copytree(source, tmp_path / "root")


def test_checkpoint_features_are_the_penultimate_layer_in_shard_order(root, tmp_path_factory, wv_cli, last_json):
    checkpoint = trained_checkpoint(tmp_path_factory)
    result = wv_cli("embed", root, "--model", checkpoint, "--name", "tiny", "--loader-workers", "0", "--batch-size", "25", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["kind"] == "checkpoint" and figures["dim"] == 32 and figures["shards_written"] == 8 and figures["samples"] == 480
    shard = Root(root).shard_names("train")[3]
    stored = sidecars.read_features(Root(root), "tiny", shard)
    assert stored.dtype == np.float16 and stored.shape == (60, 32)
    model, saved = load_checkpoint(checkpoint)
    transform = eval_transform(saved["input"])
    samples = list(iter_samples([str(Root(root).shard_path(shard))]))
    assert [s["__key__"] for s in samples] == sidecars.shard_keys(Root(root), shard).to_list()
    with torch.no_grad():
        expected = penultimate(model, torch.stack([transform(Image.open(io.BytesIO(s["jpg"]))) for s in samples])).numpy()
    np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_a_rerun_resumes_and_other_options_are_refused(root, tmp_path_factory, wv_cli, last_json):
    checkpoint = trained_checkpoint(tmp_path_factory)
    args = ("embed", root, "--model", checkpoint, "--loader-workers", "0", "--json")
    assert wv_cli(*args).exit_code == 0
    path = Root(root).features_path("model", "train-000005")
    before = np.load(path)
    path.unlink()
    figures = last_json(wv_cli(*args).stdout)
    assert figures["shards_written"] == 1 and figures["shards_skipped"] == 7
    np.testing.assert_array_equal(np.load(path), before)
    config, weights = tiny_clip(tmp_path_factory)
    result = wv_cli("embed", root, "--model-config", config, "--weights", weights, "--name", "model", "--loader-workers", "0")
    assert result.exit_code == 2 and "features/model was made with other options" in result.stderr


def test_clip_features_are_normalised_and_workers_change_nothing(root, tmp_path_factory, wv_cli, last_json):
    config, weights = tiny_clip(tmp_path_factory)
    base = ("embed", root, "--model-config", config, "--weights", weights, "--json")
    inline = last_json(wv_cli(*base, "--loader-workers", "0").stdout)
    assert inline["kind"] == "clip" and inline["name"] == "clip" and inline["dim"] == 32
    first = {s: np.load(Root(root).features_path("clip", s)) for s in Root(root).shard_names("train")}
    norms = np.linalg.norm(first["train-000000"].astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=3e-3)
    workers = wv_cli(*base, "--loader-workers", "2", "--name", "clip2")
    assert workers.exit_code == 0, workers.output
    for shard, features in first.items():
        np.testing.assert_array_equal(np.load(Root(root).features_path("clip2", shard)), features)


def test_torchrun_ranks_take_disjoint_shards(root, tmp_path_factory):
    checkpoint = trained_checkpoint(tmp_path_factory)
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "wv", "embed", str(root), "--model", str(checkpoint), "--loader-workers", "0", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = sorted((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"], r["shards_written"]) for r in reports] == [(0, 2, 4), (1, 2, 4)]
    assert sum(r["samples"] for r in reports) == 480
    for shard in Root(root).shard_names("train"):
        assert sidecars.complete(Root(root), "features", "model", shard, 60)


def test_bad_input_is_one_sentence_and_exit_2(root, tmp_path, tmp_path_factory, wv_cli):
    config, weights = tiny_clip(tmp_path_factory)
    cases = [
        ([], "give --model"),
        (["--model", "ViT-B-32", "--weights", tmp_path / "nope.bin"], "weights file"),
        (["--model-config", tmp_path / "nope.json", "--weights", weights], "model config"),
        (["--model", tmp_path / "nope.pt"], "model file"),
        (["--model-config", config, "--weights", weights, "--batch-size", "0"], "--batch-size must be at least 1"),
    ]
    for args, message in cases:
        result = wv_cli("embed", root, *args, "--loader-workers", "0")
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    result = wv_cli("embed", tmp_path / "not-a-root", "--model-config", config, "--weights", weights)
    assert result.exit_code == 2 and "not a wv dataset root" in result.stderr
