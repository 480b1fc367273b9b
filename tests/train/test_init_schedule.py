"""`wv train --init` (weights from another run or a state-dict file), timm backbones, parameter groups and
learning-rate schedules, and the warning for an epoch without gradient."""

import json
import math

import pytest
import torch

from wv.errors import WvError
from wv.models import FORMAT, ModelSpec, build_model, load_checkpoint, load_image_model, read_checkpoint, save_checkpoint, size_options
from wv.shards.build import BuildOptions, build
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth
from wv.train.init import init_weights
from wv.train.losses import TwoHead
from wv.train.options import TrainOptions
from wv.train.schedule import LrSchedule, param_groups

TINY = ("--arch", "tinycnn", "--width", "16", "--image-size", "32", "--workers", "0", "--log-every", "2", "--batch-size", "16")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """4 classes x 24 train images + 6 val images per class, 40x30 px, shards of 40."""
    base = tmp_path_factory.mktemp("init")
    write_synth(base / "synth", SynthOptions(classes=4, per_class=24, noise=0.1, val_per_class=6, width=40, height=30, seed=5))
    for split in ("train", "val"):
        build(base / "synth", base / "root", BuildOptions(split=split, shard_size=40), workers=1, progress=False)
    return base / "root"


def weights_of(state: dict) -> dict:
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


# -- --init: what loads ----------------------------------------------------------------------------
def test_a_checkpoint_of_other_classes_loads_its_body_and_not_its_head(tmp_path):
    torch.manual_seed(0)
    source = build_model("tinycnn", 10, width=8)
    save_checkpoint(tmp_path / "a.pt", source, "tinycnn", 10, [f"n{i}" for i in range(10)], {"arch_options": {"width": 8}})
    torch.manual_seed(1)
    model = build_model("tinycnn", 20, width=8)
    fresh_head = model.fc.weight.clone()
    report = init_weights(model, tmp_path / "a.pt", [f"n{i}" for i in range(20)])
    body = [k for k in model.state_dict() if not k.startswith("fc.")]
    assert report["loaded"] == len(body) == report["body_loaded"] and report["reinitialised"] == 2 and report["ignored"] == 2
    assert report["head"] == "reinitialised" and report["kind"] == "wv checkpoint" and report["source_arch"] == "tinycnn"
    assert all(torch.equal(model.state_dict()[k], source.state_dict()[k]) for k in body)
    assert torch.equal(model.fc.weight, fresh_head)

    same = build_model("tinycnn", 10, width=8)  # the same class list: the head carries on too
    report = init_weights(same, tmp_path / "a.pt", [f"n{i}" for i in range(10)])
    assert report["head"] == "loaded" and report["reinitialised"] == 0 and torch.equal(same.fc.weight, source.fc.weight)
    other = build_model("tinycnn", 10, width=8)  # as many classes, but others: a fresh head
    assert init_weights(other, tmp_path / "a.pt", [f"m{i}" for i in range(10)])["head"] == "reinitialised"


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module-prefix", "safetensors"])
def test_plain_state_dicts_load_however_they_are_wrapped(tmp_path, wrap):
    torch.manual_seed(0)
    source = build_model("resnet18", 1000)
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        wrapped = {
            "bare": state,
            "state_dict": {"state_dict": state, "epoch": 90},
            "model": {"model": state, "optimizer": {}},
            "module-prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        }[wrap]
        torch.save(wrapped, path)
    model = build_model("resnet18", 7)
    report = init_weights(model, path, [str(i) for i in range(7)])
    assert report["kind"] == "state dict" and report["head"] == "reinitialised"
    assert report["loaded"] == len(state) - 2 and report["reinitialised"] == 2 and report["ignored"] == 2
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_a_pretraining_checkpoint_loads_its_body_and_a_two_head_net_takes_a_one_head_checkpoint(tmp_path):
    """A `wv pretrain` checkpoint holds the body and a task head (here 4 outputs, under another name):
    the body loads, the task head is left out; the new run's topic head starts afresh."""
    torch.manual_seed(0)
    body = build_model("tinycnn", 4, width=8)
    state = {f"model.{k}": v for k, v in body.state_dict().items()}  # a wrapper module: body under "model."
    state["task_head.weight"] = torch.zeros(4, 32)
    torch.save({"format": FORMAT, "arch": "tinycnn", "num_classes": 4, "classes": ["r0", "r90", "r180", "r270"], "arch_options": {"width": 8}, "model": state}, tmp_path / "pretrain.pt")
    net = TwoHead(build_model("tinycnn", 6, width=8), topics=5)
    topic = net.topic_head.weight.clone()
    report = init_weights(net.model, tmp_path / "pretrain.pt", [str(i) for i in range(6)], net.topic_head)
    assert report["body_loaded"] == report["body_tensors"] == len(body.state_dict()) - 2
    assert report["reinitialised"] == 2 + 2 and report["ignored"] == 2 + 1  # class head + topic head; fc and task head
    assert torch.equal(net.model.features[0].weight, body.features[0].weight) and torch.equal(net.topic_head.weight, topic)


def test_weights_of_another_architecture_are_one_sentence(tmp_path):
    torch.save(build_model("tinycnn", 3, width=8).state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(WvError, match=r"no tensor of it fits this model .*same architecture"):
        init_weights(build_model("resnet18", 3), tmp_path / "tiny.pt", ["a", "b", "c"])
    (tmp_path / "junk.pt").write_text("not weights\n")
    with pytest.raises(WvError, match="is not a weights file"):
        init_weights(build_model("tinycnn", 3), tmp_path / "junk.pt", ["a", "b", "c"])
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(WvError, match="holds no named tensors"):
        init_weights(build_model("tinycnn", 3), tmp_path / "empty.pt", ["a", "b", "c"])


# -- --init through wv train ----------------------------------------------------------------------
def test_init_run_starts_from_the_loaded_weights_at_a_new_size_and_class_count(small_root, tmp_path, wv_cli, last_json):
    pre = tmp_path / "pre"
    result = wv_cli("train", "--shards", small_root, *TINY, "--epochs", "1", "--lr", "0.05", "--out", pre, "--json")
    assert result.exit_code == 0, result.output
    shards = str(Root(small_root).shard_path("train-000000")).replace("000000", "{000000..000002}")
    # a gate above every confidence and no weight decay: no weight moves, so the run ends with its first weights
    out = tmp_path / "init"
    result = wv_cli(
        "train",
        "--shards",
        shards,
        "--num-classes",
        "9",
        *TINY,
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--weight-decay",
        "0",
        "--backprop-gate",
        "1.01",
        "--init",
        pre / "checkpoint.pt",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    init = summary["init"]
    assert init["loaded"] == 24 and init["reinitialised"] == 2 and init["ignored"] == 2 and init["head"] == "reinitialised"
    assert "24 tensors loaded (24 of the body's 24), 2 re-initialised (the class head reinitialised), 2 of the file ignored" in result.stdout
    assert "warning: no sample had a gradient in epoch 0 (gradient share 0)" in result.stderr
    loaded, trained = read_checkpoint(pre / "checkpoint.pt"), read_checkpoint(out / "checkpoint.pt")
    assert trained["init"] == init and trained["options"]["init"] == str(pre / "checkpoint.pt") and trained["input"]["size"] == 48
    assert trained["model"]["fc.weight"].shape == (9, 32)
    body = [k for k in weights_of(trained["model"]) if not k.startswith("fc.")]
    assert all(torch.equal(trained["model"][k], loaded["model"][k]) for k in body)
    torch.manual_seed(0)  # the sampler's seed: the head is the fresh one a run from scratch starts with
    assert torch.equal(trained["model"]["fc.weight"], build_model("tinycnn", 9, width=16).fc.weight)

    refused = wv_cli("train", "--shards", small_root, *TINY, "--init", pre / "checkpoint.pt", "--out", out, "--resume")
    assert refused.exit_code == 2 and "give one of them" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    other = wv_cli("train", "--shards", small_root, "--arch", "resnet18", "--image-size", "32", "--init", pre / "checkpoint.pt", "--out", tmp_path / "r18")
    assert other.exit_code == 2 and "no tensor of it fits this model (a tinycnn checkpoint" in other.stderr
    assert not (tmp_path / "r18").exists()


# -- timm -----------------------------------------------------------------------------------------
def test_a_timm_model_trains_and_its_checkpoint_loads_for_eval(small_root, tmp_path, wv_cli, last_json):
    out = tmp_path / "timm"
    args = ("--arch", "test_resnet", "--image-size", "32", "--workers", "0", "--batch-size", "32", "--log-every", "1")
    result = wv_cli("train", "--shards", small_root, *args, "--epochs", "1", "--head-lr-mult", "5", "--freeze-body-epochs", "1", "--weight-decay", "0", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    checkpoint = read_checkpoint(out / "checkpoint.pt")
    assert checkpoint["arch"] == "test_resnet" and checkpoint["input"]["mean"] == [0.5, 0.5, 0.5]  # timm's configuration
    torch.manual_seed(0)
    fresh = weights_of(build_model("test_resnet", 4).state_dict())
    trained = checkpoint["model"]
    assert all(torch.equal(fresh[k], trained[k]) for k in fresh if not k.startswith("fc."))  # the body was frozen
    assert not torch.equal(fresh["fc.weight"], trained["fc.weight"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["lr_head"] == pytest.approx(5 * r["lr"]) for r in records)
    model = load_image_model(ModelSpec(str(out / "checkpoint.pt")), torch.device("cpu"))
    assert model.feature_dim() == 96 and model.input_shape() == (3, 32, 32)
    result = wv_cli("eval", "--shards", small_root, "--checkpoint", out / "checkpoint.pt", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["n"] == 24


def test_a_fixed_size_timm_model_is_built_for_the_run_size(tmp_path):
    model = build_model("test_vit", 3, **size_options("test_vit", 32))
    save_checkpoint(tmp_path / "vit.pt", model, "test_vit", 3, ["a", "b", "c"], {"arch_options": size_options("test_vit", 32)})
    loaded, _ = load_checkpoint(tmp_path / "vit.pt")
    assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_unknown_architectures_name_close_ones(tmp_path, wv_cli, last_json):
    result = wv_cli("train", "--shards", tmp_path, "--arch", "seresnet5O", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "unknown architecture 'seresnet5O'; did you mean seresnet50" in result.stderr
    listing = wv_cli("models", "*resnest10*", "--json")
    assert listing.exit_code == 0 and [m["name"] for m in last_json(listing.stdout)["models"]] == ["resnest101e"]
    timm_r18 = [m for m in last_json(wv_cli("models", "resnet18", "--json").stdout)["models"]]
    assert [(m["name"], m["source"]) for m in timm_r18] == [("resnet18", "torchvision"), ("timm:resnet18", "timm")]


# -- parameter groups and schedules ---------------------------------------------------------------
def test_learning_rate_schedules():
    step = LrSchedule(0.1, "step", step=2, unit="epoch", gamma=0.5)
    assert [step(e, 0.5, 0) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    per_step = LrSchedule(0.1, "step", step=10, unit="step", gamma=0.1)
    assert [per_step(0, 0, s) for s in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cosine = LrSchedule(0.1, "cosine", epochs=4, warmup_steps=4)
    assert [cosine(0, 0.0, s) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert cosine(2, 0.0, 100) == pytest.approx(0.05) and cosine(3, 0.5, 100) == pytest.approx(0.1 * (1 + math.cos(math.pi * 3.5 / 4)) / 2)
    assert cosine(4, 0.0, 100) == pytest.approx(0.0)


@pytest.mark.parametrize("arch, head", [("tinycnn", "fc"), ("resnet18", "fc"), ("densenet121", "classifier"), ("test_efficientnet", "classifier")])
def test_the_head_group_holds_the_class_head_and_the_topic_head(arch, head):
    options = TrainOptions(arch=arch, head_lr_mult=10.0)
    model = build_model(arch, 5)
    groups = param_groups(model, model, options)
    assert [g["name"] for g in groups] == ["body", "head"] and groups[1]["lr_mult"] == 10.0
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.get_submodule(head).parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    net = TwoHead(model, 3)
    assert len(param_groups(net, model, options)[1]["params"]) == len(groups[1]["params"]) + 2
    assert [g["name"] for g in param_groups(model, model, TrainOptions(arch=arch))] == ["all"]
