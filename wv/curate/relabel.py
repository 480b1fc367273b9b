"""`wv relabel`: pseudo-labels from trained models, to train on again (WeChat 2020: "use best models
to assign pseudo labels to each image and train them again").

Every image of a split goes through one or more `wv train` checkpoints (the loop of `wv score
confidence`, wv.curate.shard_images: decoded in loader workers, disjoint shards per torchrun rank, a
re-run skips the shards already written); several models average their softmax probabilities
(wv.ensemble). Writes ROOT/scores/{name}/{shard}.parquet:

    label        Int32, the pseudo-label: the most probable class where its probability is at least
                 --min-confidence, null elsewhere. Null, not the web label, so that the column says
                 only what the models are sure of; `wv train --labels NAME.label` (and `wv stream`)
                 train on it where it is present and on the web label where it is null.
    predicted    Int32, the most probable class, whatever its probability
    probability  Float32, its probability (the ensemble's mean)
    p_label      Float32, the probability of the web label (null for an unlabelled sample)
    changed      Boolean, the sample has a pseudo-label and it differs from the web label

Labels are this root's labels: every model must have been trained on exactly the root's classes
(any order).
"""

import time
from dataclasses import asdict

import numpy as np
import polars as pl
import torch

from wv.curate.relabel_options import RelabelOptions
from wv.curate.shard_images import map_images, my_shards, rank_lock
from wv.ensemble import Ensemble
from wv.errors import WvError
from wv.models import ModelSpec
from wv.runtime import pick_device
from wv.shards import sidecars
from wv.shards.root import Root, check_name

COMMAND = "relabel"
FORMAT = "wv-relabel/1"
COLUMNS = {"label": pl.Int32, "predicted": pl.Int32, "probability": pl.Float32, "p_label": pl.Float32, "changed": pl.Boolean}


def pseudo_labels(probabilities: np.ndarray, web: np.ndarray, min_confidence: float) -> dict:
    """The sidecar's columns for probabilities [N, classes] (columns in label order) and web labels [N]
    (-1: none). label -1 and p_label NaN stand for null."""
    predicted = probabilities.argmax(1).astype(np.int32)
    probability = probabilities[np.arange(len(predicted)), predicted].astype(np.float32)
    confident = probability >= min_confidence
    label = np.where(confident, predicted, -1).astype(np.int32)
    labelled = (web >= 0) & (web < probabilities.shape[1])
    p_label = np.where(labelled, probabilities[np.arange(len(web)), np.where(labelled, web, 0)], np.nan).astype(np.float32)
    return {"label": label, "predicted": predicted, "probability": probability, "p_label": p_label, "changed": confident & (predicted != web)}


def relabel(root, options: RelabelOptions, name: str = "pseudo", overwrite: bool = False) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet for this rank's shards; returns the run's figures."""
    root = Root(root)
    options.validate()
    check_name(name)
    classes = sorted(root.classes(), key=lambda c: c["label"])
    if [c["label"] for c in classes] != list(range(len(classes))):
        raise WvError(f"{root.info_path} numbers its classes other than 0..{len(classes) - 1}; the root is damaged")
    torch.manual_seed(options.seed)
    started = time.time()
    device = pick_device(options.device)
    ensemble = Ensemble(options.models, device, classes=[c["synset"] for c in classes], what="this root's")
    recorded = {"models": [ModelSpec(model=m).fingerprint() for m in options.models], "min_confidence": options.min_confidence, "split": options.split, "format": FORMAT}
    with rank_lock(root, COMMAND):
        shards, rank, world = my_shards(root, "scores", name, recorded, overwrite, options.split, COMMAND)
        tally = {"samples": 0, "confident": 0, "changed": 0}
        samples = map_images(root, ensemble, shards, Labeller(ensemble, options.min_confidence), writer(root, name, tally), options.batch_size, options.loader_workers, desc="relabel")
    skipped = sum(1 for i, _ in enumerate(root.shard_names(options.split)) if i % world == rank) - len(shards)
    return {
        "name": name,
        "models": list(options.models),
        "model": ensemble.name,
        "classes": len(classes),
        "min_confidence": options.min_confidence,
        "device": str(device),
        "rank": rank,
        "world_size": world,
        "shards_written": len(shards),
        "shards_skipped": skipped,
        "samples": samples,
        "pseudo_labelled": tally["confident"],
        "changed": tally["changed"],
        "seconds": round(time.time() - started, 2),
        "options": asdict(options),
        "paths": {"scores": str(sidecars.sidecar_dir(root, "scores", name))},
    }


class Labeller:
    """compute() of map_images: a batch's images and web labels -> the sidecar's columns."""

    def __init__(self, ensemble: Ensemble, min_confidence: float):
        self.ensemble, self.min_confidence = ensemble, min_confidence

    def __call__(self, images, labels) -> dict:
        if images is None:  # an empty shard
            return pseudo_labels(np.zeros((0, len(self.ensemble.classes)), np.float32), np.zeros(0, np.int64), self.min_confidence)
        probabilities = self.ensemble.probabilities(images).cpu().numpy()
        return pseudo_labels(probabilities, labels.numpy(), self.min_confidence)


def writer(root: Root, name: str, tally: dict):
    def write(shard: str, out: dict) -> None:
        frame = pl.DataFrame({"__key__": sidecars.shard_keys(root, shard), **{column: pl.Series(out[column], dtype=dtype) for column, dtype in COLUMNS.items()}})
        frame = frame.with_columns(pl.when(pl.col("label") >= 0).then(pl.col("label")).alias("label"), pl.col("p_label").fill_nan(None))
        sidecars.write_scores(root, name, shard, frame)
        tally["samples"] += frame.height
        tally["confident"] += int(frame["label"].is_not_null().sum())
        tally["changed"] += int(frame["changed"].sum())

    return write
