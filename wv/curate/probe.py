"""Out-of-fold linear-probe predictions on ROOT/features/NAME: the image evidence of `wv score noise`
and the predicted probabilities `wv score labelissues` gives cleanlab.

Folds are groups of shards (shard i is in fold i mod K): a fold's predictions come from a probe
trained on the other folds' shards only, so no sample is scored by a model that saw its label.
Training streams the shards (a few at a time, their rows shuffled together, since a shard may hold
few classes), so memory holds `mix_shards` shards of features, never the split. Writes the score
sidecar ROOT/scores/{name}/{shard}.parquet: __key__, p_label, top1, p_top1, probs (every class's
out-of-fold probability, float32: classes x 4 bytes per sample on disk).
"""

from dataclasses import asdict

import numpy as np
import polars as pl
from tqdm import tqdm

from wv.curate.density import check_features, pick_features
from wv.curate.noise_options import ProbeOptions
from wv.errors import WvError
from wv.progress import bar_options
from wv.runtime import check_seed, derive_seed, rng
from wv.shards import sidecars
from wv.shards.root import Root

COMMAND = "score probe"  # written by `wv score noise` and `wv score labelissues`, read by both


def image_feature_sets(root: Root) -> list[str]:
    """The feature sets `wv embed` made (not, e.g., the LDA topic distributions of `wv score lda`)."""
    return [n for n in sidecars.sidecar_names(root, "features") if (sidecars.run_record(root, "features", n, "embed").read() or {}).get("command", "embed") == "embed"]


def default_features(root: Root) -> str | None:
    """The one image feature set of the root, None when it has none; several: the user must choose."""
    names = image_feature_sets(root)
    if len(names) > 1:
        raise WvError(f"{root.path} has several image feature sets ({', '.join(names)}); choose one with --features")
    return names[0] if names else None


def probe_plan(root: Root, features: str | None, options: ProbeOptions, split: str, seed: int) -> tuple[str, pl.DataFrame, int]:
    """Checks before anything is written: (features name, shards, width)."""
    check_seed(seed)
    features = features or default_features(root)
    if features is None:
        raise WvError(f"{root.path} has no image features for the probe; make them first with `wv embed {root.path} --model ...`")
    features = pick_features(root, features)
    shards = root.shards(split)
    options.validate(shards.height)
    return features, shards, check_features(root, features, shards)


def shard_labels(root: Root, shard: str) -> tuple[pl.Series, np.ndarray]:
    meta = pl.read_parquet(root.meta_path(shard), columns=["__key__", "label"])
    return meta["__key__"], meta["label"].cast(pl.Int64).to_numpy()


def out_of_fold(root, name: str, features: str | None, options: ProbeOptions, split: str = "train", seed: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Write (or resume) the out-of-fold probe sidecar `name`; returns its figures. The caller holds the root lock."""
    root = root if isinstance(root, Root) else Root(root)
    features, shards, dim = probe_plan(root, features, options, split, seed)
    record = {"features": features, "split": split, "seed": seed, **asdict(options), "features_run": sidecars.run_record(root, "features", features, "embed").options()}
    todo = set(sidecars.begin_run(root, "scores", name, record, overwrite, split, command=COMMAND))
    names = shards["name"].to_list()
    classes = len(root.classes())
    folds = [[s for i, s in enumerate(names) if i % options.folds == k] for k in range(options.folds)]
    scale = standardiser(root, features, names) if todo else None
    for k, held_out in enumerate(tqdm(folds, desc="probe: folds", **bar_options(progress))):
        if not todo & set(held_out):
            continue
        probe = train_fold(root, features, [s for s in names if s not in held_out], dim, classes, scale, options, derive_seed(seed, k))
        for shard in held_out:
            keys, _ = shard_labels(root, shard)
            write_predictions(root, name, shard, keys, probe.probabilities(sidecars.read_features(root, features, shard)))
    return {"features": features, "dim": dim, "folds": options.folds, "shards_written": len(todo), "shards": len(names)}


def standardiser(root: Root, features: str, names: list):
    from wv.curate.probe_core import Standardiser

    running = Standardiser()
    for shard in names:
        running.update(sidecars.read_features(root, features, shard))
    return running.scale()


def train_fold(root: Root, features: str, names: list, dim: int, classes: int, scale, options: ProbeOptions, seed: int):
    import torch

    from wv.curate.probe_core import LinearProbe, batches

    torch.manual_seed(seed)
    probe = LinearProbe(dim, classes, *scale, seed=seed, lr=options.lr)
    order = rng(seed, 1)
    for _ in range(options.epochs):
        shuffled = [names[i] for i in order.permutation(len(names))]
        for start in range(0, len(shuffled), options.mix_shards):
            window = shuffled[start : start + options.mix_shards]
            x = np.concatenate([np.asarray(sidecars.read_features(root, features, s), dtype=np.float32) for s in window])
            y = np.concatenate([shard_labels(root, s)[1] for s in window])
            for xb, yb in batches(x, y, options.batch_size, order):
                probe.step(xb, yb)
    return probe


def write_predictions(root: Root, name: str, shard: str, keys: pl.Series, probs: np.ndarray) -> None:
    labels = shard_labels(root, shard)[1]
    top1 = probs.argmax(axis=1)
    rows = np.arange(len(labels))
    valid = (labels >= 0) & (labels < probs.shape[1])
    p_label = np.where(valid, probs[rows, np.clip(labels, 0, probs.shape[1] - 1)], np.nan)
    sidecars.write_scores(
        root,
        name,
        shard,
        pl.DataFrame(
            {
                "__key__": keys,
                "p_label": pl.Series(p_label, dtype=pl.Float32),
                "top1": pl.Series(top1, dtype=pl.Int32),
                "p_top1": pl.Series(probs[rows, top1], dtype=pl.Float32),
                "probs": pl.Series(probs.astype(np.float32), dtype=pl.Array(pl.Float32, probs.shape[1])),
            }
        ),
    )


def read_probabilities(root: Root, name: str, names: list) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, classes) float32, labels) over the shards, in order: cleanlab wants them in memory."""
    probs, labels = [], []
    for shard in names:
        keys, label = shard_labels(root, shard)
        frame = sidecars.read_score(root, name, shard, ["probs"], keys=keys)
        probs.append(frame["probs"].to_numpy().astype(np.float32))
        labels.append(label)
    return np.concatenate(probs), np.concatenate(labels)
