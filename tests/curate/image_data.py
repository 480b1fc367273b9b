"""Shared, built-once test data for the image scorers (embed, density, confidence, curriculum).

`noisy_root`: a synthetic set with 30% planted label noise (ground truth in SYNTH/ground_truth.parquet),
built into a dataset root. `trained_checkpoint`: a TinyCNN trained for a few epochs on the root's
noisy labels, saved in the `wv train` checkpoint format (a stand-in for `wv train`, so these tests do
not depend on the trainer). `tiny_clip`: a randomly initialised open_clip model of a custom, tiny
architecture (config JSON + weights file), as a user with local weights would pass it.

Everything is built once per test session (cached in this module) under pytest's session temp dir.
"""

import io
import json

import numpy as np
import polars as pl
import torch
from PIL import Image

from wv.models import build_model, default_input, eval_transform, save_checkpoint
from wv.shards.build import BuildOptions, build
from wv.shards.read import iter_samples, shard_urls
from wv.shards.root import Root
from wv.synth import SynthOptions, write_synth

CACHE: dict = {}
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def noisy_root(tmp_path_factory, classes: int = 6, per_class: int = 80, noise: float = 0.3, shard_size: int = 60, seed: int = 3):
    """(root, synth): by default 6 classes x 80 train images, 30% noise (flips and outliers), shards of 60."""
    key = ("root", classes, per_class, noise, shard_size, seed)
    if key not in CACHE:
        base = tmp_path_factory.mktemp("image-curation")
        synth = base / "synth"
        write_synth(synth, SynthOptions(classes=classes, per_class=per_class, noise=noise, val_per_class=4, seed=seed))
        root = base / "root"
        build(synth, root, BuildOptions(split="train", shard_size=shard_size), workers=1, progress=False)
        CACHE[key] = (root, synth)
    return CACHE[key]


def truth_by_shard_order(root, synth) -> pl.DataFrame:
    """__key__, label, is_noisy for the train samples, in dataset (shard, row) order."""
    root = Root(root)
    keys = pl.concat([pl.read_parquet(root.meta_path(s), columns=["__key__", "label"]) for s in root.shard_names("train")])
    truth = pl.read_parquet(synth / "ground_truth.parquet", columns=["__key__", "is_noisy", "noise"])
    return keys.join(truth, on="__key__", how="left", maintain_order="left")


def load_images(root, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    transform = eval_transform({**default_input("tinycnn"), "size": size})
    images, labels = [], []
    for sample in iter_samples(shard_urls(root, "train")):
        images.append(transform(Image.open(io.BytesIO(sample["jpg"]))))
        labels.append(int(sample["cls"]))
    return torch.stack(images), torch.tensor(labels)


def trained_checkpoint(tmp_path_factory, epochs: int = 6, size: int = 48, seed: int = 0, root=None):
    """A TinyCNN trained on the noisy labels of `root` (default: noisy_root()), as a wv checkpoint file."""
    key = ("checkpoint", str(root), epochs, size, seed)
    if key not in CACHE:
        root = root or noisy_root(tmp_path_factory)[0]
        classes = Root(root).classes()
        torch.manual_seed(seed)
        images, labels = load_images(root, size)
        model = build_model("tinycnn", len(classes), width=16)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(epochs):
            model.train()
            for batch in torch.randperm(len(labels)).split(64):
                loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        path = tmp_path_factory.mktemp("checkpoint") / "tinycnn.pt"
        save_checkpoint(
            path, model.eval(), "tinycnn", len(classes), [c["synset"] for c in classes], {"input": {**default_input("tinycnn"), "size": size}, "arch_options": {"width": 16}, "step": epochs}
        )
        CACHE[key] = path
    return CACHE[key]


def tiny_clip(tmp_path_factory, seed: int = 0):
    """(config JSON path, weights path) of a random tiny open_clip model named `wv-tiny-clip`."""
    if "clip" not in CACHE:
        import open_clip

        folder = tmp_path_factory.mktemp("clip")
        config = folder / "wv-tiny-clip.json"
        config.write_text(json.dumps(TINY_CLIP))
        open_clip.add_model_config(config)
        torch.manual_seed(seed)
        model = open_clip.create_model("wv-tiny-clip")
        weights = folder / "wv-tiny-clip.pt"
        torch.save(model.state_dict(), weights)
        CACHE["clip"] = (config, weights)
    return CACHE["clip"]


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores higher than a random negative (ties count half)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive.astype(int), score))
