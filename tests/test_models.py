"""wv/models.py: architectures by name, the wv checkpoint format, penultimate features."""

import pytest
import torch
from torch import nn

from wv.errors import WvError
from wv.models import ARCHS, FORMAT, build_model, default_input, eval_transform, load_checkpoint, penultimate, read_checkpoint, save_checkpoint

PENULTIMATE_WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "densenet121": 1024, "tinycnn": 64, "test_resnet": 96, "test_efficientnet": 256}  # two small timm models


@pytest.mark.parametrize("arch", [*ARCHS, "test_resnet", "test_efficientnet"])
def test_every_architecture_builds_classifies_and_gives_penultimate_features(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        features = penultimate(model, images)
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else model.fc if hasattr(model, "fc") else model.classifier
        assert logits.shape == (1, 5) and features.shape == (1, PENULTIMATE_WIDTH[arch])
        assert torch.allclose(classifier(features), logits, atol=1e-5)  # the features are what the classifier sees


def test_tinycnn_penultimate_is_the_pooled_conv_features():
    model = build_model("tinycnn", 3, width=8).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(penultimate(model, images), model.features(images))
    assert not model.fc._forward_hooks  # the hook is removed again


def test_unknown_architecture_and_no_classes_are_refused():
    with pytest.raises(WvError, match=r"unknown architecture 'vgg99'; did you mean vgg19, .*`wv models` lists them"):
        build_model("vgg99", 10)
    with pytest.raises(WvError, match="at least one class"):
        build_model("tinycnn", 0)


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the real model is .module."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_checkpoint_round_trip_keeps_weights_classes_and_extra_keys(tmp_path):
    torch.manual_seed(1)
    model = build_model("tinycnn", 3, width=8).eval()
    path = save_checkpoint(tmp_path / "run" / "ckpt.pt", Wrapper(model), "tinycnn", 3, ["n1", "n2", "n3"], {"step": 7, "optimizer": {"lr": 0.1}, "arch_options": {"width": 8}})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # atomic: no temp file left
    loaded, checkpoint = load_checkpoint(path)
    assert checkpoint["format"] == FORMAT and checkpoint["classes"] == ["n1", "n2", "n3"] and checkpoint["num_classes"] == 3
    assert checkpoint["step"] == 7 and checkpoint["optimizer"] == {"lr": 0.1}
    assert checkpoint["input"] == default_input("tinycnn")
    assert not any(k.startswith("module.") for k in checkpoint["model"])
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert not loaded.training


def test_checkpoint_saved_from_a_prefixed_state_dict_still_loads(tmp_path):
    model = build_model("tinycnn", 2, width=8)
    checkpoint = {"format": FORMAT, "arch": "tinycnn", "num_classes": 2, "classes": ["a", "b"], "arch_options": {"width": 8}, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(checkpoint, tmp_path / "ddp.pt")
    loaded, _ = load_checkpoint(tmp_path / "ddp.pt")
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(WvError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    with pytest.raises(WvError, match="is not a wv checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save(build_model("tinycnn", 2).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(WvError, match="no format 'wv-checkpoint/1'"):
        read_checkpoint(tmp_path / "bare.pt")
    good = {"format": FORMAT, "arch": "vgg99", "num_classes": 2, "classes": ["a", "b"], "model": {}}
    torch.save(good, tmp_path / "vgg.pt")
    with pytest.raises(WvError, match="unknown architecture 'vgg99'"):
        load_checkpoint(tmp_path / "vgg.pt")
    torch.save({**good, "arch": "tinycnn", "num_classes": 3, "classes": ["a", "b", "c"], "model": build_model("tinycnn", 2).state_dict()}, tmp_path / "mismatch.pt")
    with pytest.raises(WvError, match="do not fit a tinycnn with 3 classes"):
        load_checkpoint(tmp_path / "mismatch.pt")
    torch.save({"format": FORMAT, "arch": "tinycnn"}, tmp_path / "damaged.pt")
    with pytest.raises(WvError, match="lacks num_classes, classes, model"):
        load_checkpoint(tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="2 class names for 3 outputs"):
        save_checkpoint(tmp_path / "x.pt", build_model("tinycnn", 3), "tinycnn", 3, ["a", "b"])


def test_eval_transform_resizes_crops_and_normalises_any_image_mode():
    from PIL import Image

    transform = eval_transform({"size": 40, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    for image in (Image.new("RGB", (96, 72), (255, 0, 0)), Image.new("L", (50, 120), 128), Image.new("CMYK", (64, 64))):
        tensor = transform(image)
        assert tensor.shape == (3, 40, 40)
        assert -1.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    red = transform(Image.new("RGB", (96, 72), (255, 0, 0)))
    assert torch.allclose(red[0], torch.ones(40, 40)) and torch.allclose(red[1], -torch.ones(40, 40))
