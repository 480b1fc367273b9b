"""`wv train` and `wv eval` on small synthetic roots: learning, logs, checkpoints, kill-and-resume,
the challenge entries' losses, torchrun with two processes and two nodes on loopback, bad input."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wv.models import build_model, load_checkpoint, read_checkpoint
from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth

TINY = ("--arch", "tinycnn", "--width", "16", "--image-size", "32", "--workers", "1", "--log-every", "2")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="session")
def train_root(tmp_path_factory):
    """6 classes x 50 train images (20% noise) + 10 val images per class, 40x30 px, shards of 40. Read-only."""
    base = tmp_path_factory.mktemp("trainer")
    write_synth(base / "synth", SynthOptions(classes=6, per_class=50, noise=0.2, val_per_class=10, width=40, height=30, seed=11))
    for split in ("train", "val"):
        build(base / "synth", base / "root", BuildOptions(split=split, shard_size=40), workers=1, progress=False)
    return base / "root"


def run_wv(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "wv", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout)


def torchrun(*args, nodes=None, timeout=300):
    launch = ["--standalone", "--nproc_per_node=2"] if nodes is None else ["--nnodes=2", f"--node_rank={nodes[0]}", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={nodes[1]}"]
    command = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "wv", "train", *map(str, args)]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def summary_of(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def kill_after_checkpoint(process: subprocess.Popen, checkpoint: Path, timeout=240) -> int:
    """SIGKILL the whole process group as soon as the first mid-epoch checkpoint exists; its optimizer steps."""
    deadline = time.time() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return read_checkpoint(checkpoint)["optimizer_steps"]


def test_a_small_model_learns_well_above_chance(train_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "run"
    result = wv_cli("train", "--shards", train_root, "--val", train_root, *TINY, "--epochs", "4", "--batch-size", "16", "--lr", "0.05", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert summary["world_size"] == 1 and summary["epochs"] == 4 and summary["parameters_equal_across_ranks"]
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["val_top1"] > 0.6 and summary["val_top5"] >= summary["val_top1"]  # chance: 1/6
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2, 3]
    assert all({"loss", "lr", "images_per_s"} <= set(r) for r in records if r["kind"] == "train")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "train.json").read_text())["val_top1"] == summary["val_top1"]
    model, checkpoint = load_checkpoint(out / "checkpoint.pt")  # what wv embed / score confidence read
    assert checkpoint["classes"] == [c["synset"] for c in Root(train_root).classes()] and checkpoint["input"]["size"] == 32

    result = wv_cli("eval", "--shards", train_root, "--checkpoint", out / "checkpoint.pt", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["n"] == 60 and figures["crops"] == 1 and abs(figures["top1"] - summary["val_top1"]) < 1e-9
    table = (Path(figures["paths"]["csv"])).read_text().splitlines()
    assert table[0] == "label,synset,name,n,top1,top5" and len(table) == 7
    assert sum(int(line.split(",")[3]) for line in table[1:]) == 60


def test_multi_crop_eval(train_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "run"
    assert wv_cli("train", "--shards", train_root, *TINY, "--epochs", "1", "--batch-size", "16", "--out", out).exit_code == 0
    for crops in ("10", "144"):
        result = wv_cli("eval", "--shards", train_root, "--checkpoint", out / "checkpoint.pt", "--crops", crops, "--workers", "0", "--out", tmp_path / crops, "--json")
        assert result.exit_code == 0, result.output
        figures = last_json(result.stdout)
        assert figures["crops"] == int(crops) and figures["n"] == 60 and 0 <= figures["top1"] <= figures["top5"] <= 1
        assert json.loads((tmp_path / crops / "eval.json").read_text())["crops"] == int(crops)


def test_crop_views():
    from PIL import Image

    from wv.train.crops import EvalCrops

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    for crops in (1, 10, 144):
        views = EvalCrops(24, crops)(image)
        assert views.shape == (crops, 3, 24, 24) and views.dtype == torch.uint8
    ten = EvalCrops(24, 10)(image)
    assert torch.equal(ten[5], ten[1].flip(-1))  # the flipped image's top-left crop mirrors the top-right crop
    portrait = EvalCrops(24, 144)(image.transpose(Image.Transpose.ROTATE_90))
    assert portrait.shape == (144, 3, 24, 24)


def test_normalise_keeps_the_bits_and_its_input():
    from wv.train.crops import normalise

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 9, 7), dtype=np.uint8))
    reference = (images.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.equal(normalise(images, mean, std), reference)
    floats = images.float()
    assert torch.equal(normalise(floats, mean, std), reference) and torch.equal(floats, images.float())  # a float input is left alone


def test_kill_then_resume_gives_the_uninterrupted_parameters(train_root, tmp_path):
    """Under a cosine schedule with warm-up, a head at 3x the body's lr and a body frozen for the first epoch:
    every learning rate is a function of (epoch, batch, step), so the resumed run sets the very same ones."""
    schedule = ("--lr-schedule", "cosine", "--warmup-steps", "5", "--head-lr-mult", "3", "--freeze-body-epochs", "1")
    args = ("train", "--shards", train_root, *TINY, "--epochs", "2", "--batch-size", "16", "--checkpoint-every", "3", *schedule, "--json")
    done = run_wv(*args, "--out", tmp_path / "whole")
    assert done.returncode == 0, done.stderr[-3000:]
    total = summary_of(done.stdout)["optimizer_steps"]

    killed = subprocess.Popen([sys.executable, "-m", "wv", *map(str, args), "--out", tmp_path / "killed"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    at = kill_after_checkpoint(killed, tmp_path / "killed" / "checkpoint.pt")
    assert 0 < at < total
    assert run_wv(*args, "--out", tmp_path / "killed").returncode == 2  # never overwritten without --resume
    resumed = run_wv(*args, "--out", tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = summary_of(resumed.stdout)
    assert summary["optimizer_steps"] == total and summary["optimizer_steps_this_run"] == total - at
    assert same_weights(tmp_path / "whole" / "checkpoint.pt", tmp_path / "killed" / "checkpoint.pt")
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    whole_log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in log] == [(r["kind"], r["step"]) for r in whole_log]  # cut back to the checkpoint
    assert [r["loss"] for r in log] == [r["loss"] for r in whole_log]
    assert [(r["lr"], r["lr_head"]) for r in log] == [(r["lr"], r["lr_head"]) for r in whole_log]
    assert all(r["seconds"] > 0 for r in log if r["kind"] == "epoch")


def test_torchrun_two_processes_and_two_nodes(train_root, tmp_path):
    args = ("--shards", train_root, "--val", train_root, *TINY, "--epochs", "2", "--batch-size", "8", "--accum-steps", "2", "--checkpoint-every", "4", "--lr", "0.05", "--json")
    whole = torchrun(*args, "--out", tmp_path / "whole")
    killed = torchrun(*args, "--out", tmp_path / "killed")
    at = kill_after_checkpoint(killed, tmp_path / "killed" / "checkpoint.pt")
    stdout, stderr = whole.communicate(timeout=300)
    assert whole.returncode == 0, stderr[-3000:]
    summary = summary_of(stdout)
    assert summary["world_size"] == 2 and summary["parameters_equal_across_ranks"]
    assert len(set(summary["parameter_digests"])) == 1 and summary["final_loss"] < summary["first_loss"]
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e["val_n"] for e in epochs] == [60, 60]  # each rank evaluated its own val shard, the counts were summed
    assert 0 < at < summary["optimizer_steps"]
    per_epoch = summary["steps_per_rank"] // 2
    assert summary["optimizer_steps"] == 2 * -(-per_epoch // 2)  # --accum-steps 2: one step per two batches

    resumed = torchrun(*args, "--out", tmp_path / "killed", "--resume")
    port = free_port()
    nodes = [torchrun(*args, "--out", tmp_path / "nodes", nodes=(rank, port)) for rank in (0, 1)]
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert summary_of(stdout)["parameters_equal_across_ranks"]
    assert same_weights(tmp_path / "whole" / "checkpoint.pt", tmp_path / "killed" / "checkpoint.pt")

    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    two_nodes = summary_of(outputs[0][0])
    assert two_nodes["world_size"] == 2 and two_nodes["parameters_equal_across_ranks"]
    assert two_nodes["steps_per_rank"] == summary["steps_per_rank"]
    # the same world size sees the same batches: two nodes train to the very parameters of one node with two processes
    assert same_weights(tmp_path / "whole" / "checkpoint.pt", tmp_path / "nodes" / "checkpoint.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gate_above_every_confidence_blocks_every_gradient(train_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "gated"
    result = wv_cli("train", "--shards", train_root, *TINY, "--epochs", "1", "--batch-size", "16", "--weight-decay", "0", "--backprop-gate", "1.01", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    initial = build_model("tinycnn", 6, width=16).state_dict()
    trained = read_checkpoint(out / "checkpoint.pt")["model"]
    weights = [k for k in initial if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(initial[k], trained[k]) for k in weights)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["gradient_share"] == 0 for r in records if r["kind"] == "train")

    falling = wv_cli("train", "--shards", train_root, *TINY, "--epochs", "2", "--batch-size", "16", "--backprop-gate", "1.01@0,0@1", "--out", tmp_path / "falling", "--json")
    assert falling.exit_code == 0, falling.output
    shares = [json.loads(line)["gradient_share"] for line in (tmp_path / "falling" / "log.jsonl").read_text().splitlines() if '"train"' in line]
    assert shares[0] < 0.5 and shares[-1] == 1.0  # the gate falls to 0 within the first epoch


def test_losses():
    from wv.train.losses import BackpropGate, class_loss, confidence_gate, soft_label_weight, topic_loss

    scores = torch.tensor([0.9, 0.5, 0.25, -0.1, float("nan")])
    assert soft_label_weight(scores, 0.5).tolist() == [1.0, 1.0, 0.5, 0.0, 1.0]
    logits = torch.tensor([[4.0, 0.0], [0.1, 0.0]])
    assert confidence_gate(logits, 0.9).tolist() == [1.0, 0.0]
    labels = torch.tensor([0, -1])
    expected = torch.nn.functional.cross_entropy(logits[:1], labels[:1]) / 2
    assert torch.isclose(class_loss(logits, labels, torch.ones(2)), expected)
    targets = torch.tensor([[0.5, 0.5], [float("nan"), float("nan")]])
    assert torch.isclose(topic_loss(torch.zeros(2, 2), targets, "softmax"), torch.tensor(np.log(2) / 2, dtype=torch.float32))
    assert torch.isclose(topic_loss(torch.zeros(2, 2), targets), torch.tensor(2 * np.log(2) / 2, dtype=torch.float32))  # sigmoid
    gate = BackpropGate.parse("0.6@0,0@100 steps")
    assert gate.unit == "step" and gate.threshold(0.0, 50) == pytest.approx(0.3)
    assert BackpropGate.parse("0.5@0,0@10").threshold(5.0, 0) == pytest.approx(0.25)


def test_soft_labels_two_heads_and_curriculum(stream_root, tmp_path, wv_cli, last_json):
    root = Path(stream_root)
    topics_root = tmp_path / "root"
    shutil.copytree(root, topics_root)
    rng = np.random.default_rng(0)
    for shard in Root(topics_root).shards("train").iter_rows(named=True):
        theta = rng.dirichlet(np.ones(5), shard["samples"]).astype(np.float16)
        theta[0] = np.nan  # a text LDA could not score
        sidecars.write_features(Root(topics_root), "lda", shard["name"], theta)
    out = tmp_path / "run"
    result = wv_cli(
        "train",
        "--shards",
        topics_root,
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--soft-label",
        "synthetic.p",
        "--topic-head",
        "lda",
        "--curriculum",
        "0:0;1:0,1,2",
        "--subset-weights",
        "1,0.5,0.5",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    checkpoint = read_checkpoint(out / "checkpoint.pt")
    assert checkpoint["topic_head"]["weight"].shape == (5, 32)
    assert checkpoint["sampler"]["columns"] == ["synthetic.p"]
    load_checkpoint(out / "checkpoint.pt")  # the class model alone loads as any checkpoint
    curriculum = sidecars.read_scores(Root(topics_root), "curriculum").collect()
    clean = int((curriculum["subset"] == 0).sum())
    assert summary["steps_per_rank"] == -(-clean // 16) + -(-curriculum.height // 16)  # stage 0 only the clean subset


def test_bad_input_gives_one_sentence(train_root, tmp_path, wv_cli):
    cases = [
        (("train", "--shards", tmp_path / "nowhere", "--arch", "tinycnn", "--out", tmp_path / "a"), "no shards found"),
        (("train", "--shards", train_root, "--arch", "vgg99", "--out", tmp_path / "b"), "unknown architecture"),
        (("train", "--shards", train_root, "--arch", "tinycnn", "--out", tmp_path / "c", "--resume"), "nothing to resume"),
        (("train", "--shards", str(Root(train_root).shard_path("train-000000")), "--arch", "tinycnn", "--out", tmp_path / "d"), "--num-classes"),
        (("train", "--shards", train_root, "--arch", "tinycnn", "--soft-label", "nope", "--out", tmp_path / "e"), "SCORE.COLUMN"),
        (("train", "--shards", train_root, "--arch", "tinycnn", "--backprop-gate", "high", "--out", tmp_path / "f"), "--backprop-gate"),
        (("eval", "--shards", train_root, "--checkpoint", train_root / "wv.json"), "is not a wv checkpoint"),
    ]
    for args, words in cases:
        result = wv_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    out = tmp_path / "run"
    assert wv_cli("train", "--shards", train_root, *TINY, "--epochs", "1", "--batch-size", "32", "--out", out).exit_code == 0
    other = wv_cli("train", "--shards", train_root, "--arch", "resnet18", "--epochs", "2", "--out", out, "--resume")
    assert other.exit_code == 2 and "trained with another --arch" in other.stderr


def test_a_loss_that_is_no_longer_a_number_stops_the_run_before_its_checkpoint(train_root, tmp_path, wv_cli):
    """The loss is read back at --log-every (not every batch): there it is checked, and nothing is saved."""
    out = tmp_path / "run"
    result = wv_cli("train", "--shards", train_root, *TINY, "--epochs", "1", "--batch-size", "16", "--lr", "1e30", "--checkpoint-every", "3", "--out", out)
    assert result.exit_code == 2 and "the loss became nan in epoch 0 by batch 2; lower --lr" in result.stderr
    assert not (out / "checkpoint.pt").exists()
