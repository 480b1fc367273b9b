"""`wv embed`: image features per shard, ROOT/features/{name}/{shard}.npy (float16, shard order).

The model is an open_clip model (a name plus a local weights file or a pretrained tag; a custom
architecture from a config JSON) or a `wv train` checkpoint (wv/models.py: the penultimate layer).
CLIP features are the L2-normalised image embedding; checkpoint features are the raw input of the
classifier. The images go through the loop of wv/curate/shard_images.py (DataLoader workers, one
share of the shards per torchrun rank, a re-run skips the shards already written), which serves
`wv score confidence` too.
"""

import time

import numpy as np
import torch

from wv.curate.shard_images import check_loader, map_images, my_shards, rank_lock
from wv.errors import WvError
from wv.models import ModelSpec, load_image_model
from wv.runtime import check_seed, pick_device
from wv.shards import sidecars
from wv.shards.root import Root, check_name

COMMAND = "embed"


def embed(root, spec: ModelSpec, name: str | None = None, split: str = "train", batch_size: int = 256, loader_workers: int = 0, device: str = "auto", overwrite: bool = False, seed: int = 0) -> dict:
    """Write ROOT/features/{name}/{shard}.npy for this rank's shards; returns the run's figures."""
    root = Root(root)
    root.info()
    torch.manual_seed(check_seed(seed))
    started = time.time()
    dev = pick_device(device)
    model = load_image_model(spec, dev)
    name = check_name(name or ("clip" if model.kind == "clip" else "model"))
    dim = model.feature_dim()
    options = {"model": spec.fingerprint(), "kind": model.kind, "dim": dim, "split": split, "dtype": "float16"}
    check_loader(batch_size, loader_workers)
    with rank_lock(root, COMMAND):
        shards, rank, world = my_shards(root, "features", name, options, overwrite, split, COMMAND)
        samples = embed_shards(root, model, name, dim, shards, batch_size, loader_workers)
    skipped = sum(1 for i, _ in enumerate(root.shard_names(split)) if i % world == rank) - len(shards)
    seconds = time.time() - started
    return {
        "name": name,
        "kind": model.kind,
        "model": model.name,
        "dim": dim,
        "device": str(dev),
        "rank": rank,
        "world_size": world,
        "shards_written": len(shards),
        "shards_skipped": skipped,
        "samples": samples,
        "seconds": round(seconds, 2),
        "paths": {"features": str(sidecars.sidecar_dir(root, "features", name))},
    }


def embed_shards(root: Root, model, name: str, dim: int, shards: list, batch_size: int, loader_workers: int) -> int:
    """Write the features of `shards`; returns the samples done."""

    def compute(images, labels):
        if images is None:
            return {"features": np.zeros((0, dim), np.float16)}
        features = model.features(images).float().cpu().numpy().astype(np.float16)
        if not np.isfinite(features).all():
            raise WvError(f"{model.name} gives features that are not finite in float16 (NaN, or beyond 65,504); check the model")
        return {"features": features}

    def write(shard, out):
        sidecars.write_features(root, name, shard, out["features"])

    return map_images(root, model, shards, compute, write, batch_size, loader_workers, desc=f"embed {name}")
