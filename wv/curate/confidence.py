"""`wv score confidence`: how much a model believes each sample's label.

Writes ROOT/scores/{name}/{shard}.parquet: __key__, p_label (the probability of the labelled class),
top1 (the most probable class, as a label of this root; null when a checkpoint's top class is not one
of the root's classes) and p_top1 (its probability).

Two kinds of model:
  CLIP zero-shot  an open_clip model (wv.models.ModelSpec); a classifier over the root's classes
                  from their names (wv.json: the first WordNet name of each synset, or with
                  `class_names="imagenet"` open_clip's curated ImageNet names for the 1,000 WebVision
                  1.0 classes) and prompt templates ("a photo of a {}." ...); probabilities are the
                  softmax of logit_scale * cosine similarity. The tokenizer's BPE vocabulary ships
                  inside open_clip, so this runs offline.
  checkpoint      a `wv train` checkpoint (wv/models.py); softmax over its outputs, matched to the
                  root's classes by synset (every root class must be one of its classes).
                  Several checkpoints (an ensemble, wv.ensemble) average their probabilities; they
                  must share one class list.
Same loop as `wv embed`: shards decoded in DataLoader workers, batches on the GPU when there is one,
disjoint shards per torchrun rank, a re-run skips the shards already written.
"""

import time
from importlib import resources

import numpy as np
import polars as pl
import torch

from wv.curate.shard_images import check_loader, map_images, my_shards, rank_lock
from wv.ensemble import Ensemble
from wv.errors import WvError
from wv.models import ImageModel, ModelSpec, load_image_model
from wv.runtime import check_seed, pick_device
from wv.shards import sidecars
from wv.shards.root import Root, check_name

COMMAND = "score confidence"

TEMPLATE_SETS = ("simple", "openai")
CLASS_NAMES = ("wordnet", "imagenet")


def templates_for(templates: str) -> list:
    import open_clip

    if templates == "simple":
        return list(open_clip.SIMPLE_IMAGENET_TEMPLATES)
    if templates == "openai":
        return list(open_clip.OPENAI_IMAGENET_TEMPLATES)
    if "{}" in templates:
        return [t.strip() for t in templates.split("|") if t.strip()]
    raise WvError("--templates must be simple, openai, or your own prompts with {} for the class name, separated by |")


def class_names(classes: list[dict], which: str = "wordnet") -> list[str]:
    if which == "wordnet":
        return [c["names"].split(",")[0].strip() or c["synset"] for c in classes]
    if which == "imagenet":
        import open_clip

        lines = resources.files("wv").joinpath("data", "webvision1_synsets.txt").read_text().splitlines()
        if [c["synset"] for c in classes] != [line.split(" ")[0] for line in lines]:
            raise WvError("--class-names imagenet needs the 1,000 WebVision 1.0 classes in their order; use --class-names wordnet")
        return list(open_clip.IMAGENET_CLASSNAMES)
    raise WvError(f"--class-names must be one of {', '.join(CLASS_NAMES)}")


class Scorer:
    """probabilities over the root's classes (or a checkpoint's, mapped back) for a batch of images."""

    def __init__(self, model: ImageModel | Ensemble, classes: list[dict], templates: str, names: str):
        self.model = model
        self.synsets = [c["synset"] for c in classes]
        if model.kind == "clip":
            self.head = self.zero_shot_head(templates_for(templates), class_names(classes, names))
            self.column_of_label = torch.arange(len(classes))
            self.label_of_column = torch.arange(len(classes))
        else:
            self.column_of_label, self.label_of_column = self.match_checkpoint(model.classes)

    @torch.no_grad()
    def zero_shot_head(self, templates: list, names: list[str]) -> torch.Tensor:
        import open_clip

        tokenizer = open_clip.get_tokenizer(self.model.name)
        head = open_clip.build_zero_shot_classifier(self.model.net, tokenizer, names, templates, num_classes_per_batch=50, device=self.model.device)
        return head * self.model.net.logit_scale.exp()

    def match_checkpoint(self, checkpoint_classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        column = {synset: i for i, synset in enumerate(checkpoint_classes)}
        missing = [s for s in self.synsets if s not in column]
        if missing:
            raise WvError(f"the checkpoint does not know {len(missing)} of this root's classes (e.g. {missing[0]}); it was trained on other classes")
        label = {synset: i for i, synset in enumerate(self.synsets)}
        return (torch.tensor([column[s] for s in self.synsets]), torch.tensor([label.get(s, -1) for s in checkpoint_classes]))

    @torch.no_grad()
    def __call__(self, images, labels) -> dict:
        if images is None:
            return {"p_label": np.zeros(0, np.float32), "top1": np.zeros(0, np.int32), "p_top1": np.zeros(0, np.float32)}
        if self.model.kind == "clip":
            probs = (self.model.features(images) @ self.head).float().softmax(1).cpu()
        else:
            probs = self.model.probabilities(images).cpu()
        p_label = probs.gather(1, self.column_of_label[labels][:, None])[:, 0]
        p_top1, column = probs.max(1)
        return {"p_label": p_label.numpy(), "top1": self.label_of_column[column].numpy().astype(np.int32), "p_top1": p_top1.numpy()}


def score_confidence(
    root,
    spec: ModelSpec | list[ModelSpec],
    name: str = "confidence",
    split: str = "train",
    templates: str = "simple",
    names: str = "wordnet",
    batch_size: int = 256,
    loader_workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    seed: int = 0,
) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet for this rank's shards; returns the run's figures.
    `spec`: one model, or a list of wv checkpoints whose probabilities are averaged."""
    root = Root(root)
    classes = root.classes()
    check_name(name)
    torch.manual_seed(check_seed(seed))
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    started = time.time()
    dev = pick_device(device)
    model = load_model(specs, dev)
    scorer = Scorer(model, classes, templates, names)
    fingerprint = specs[0].fingerprint() if len(specs) == 1 else [s.fingerprint() for s in specs]
    options = {"model": fingerprint, "kind": model.kind, "split": split, "format": "wv-confidence/1", **({"templates": templates, "class_names": names} if model.kind == "clip" else {})}
    check_loader(batch_size, loader_workers)
    with rank_lock(root, COMMAND):
        shards, rank, world = my_shards(root, "scores", name, options, overwrite, split, COMMAND)
        samples = score_shards(root, name, scorer, shards, batch_size, loader_workers)
    skipped = sum(1 for i, _ in enumerate(root.shard_names(split)) if i % world == rank) - len(shards)
    return {
        "name": name,
        "kind": model.kind,
        "model": model.name,
        "models": len(specs),
        "classes": len(classes),
        "device": str(dev),
        "rank": rank,
        "world_size": world,
        "shards_written": len(shards),
        "shards_skipped": skipped,
        "samples": samples,
        "seconds": round(time.time() - started, 2),
        "paths": {"scores": str(sidecars.sidecar_dir(root, "scores", name))},
    }


def load_model(specs: list[ModelSpec], device) -> ImageModel | Ensemble:
    """A CLIP model, or one or more wv checkpoints as an Ensemble (one checkpoint: its own probabilities)."""
    if not specs:
        raise WvError("give --model: an open_clip model name or a wv checkpoint file")
    if len(specs) == 1 and not specs[0].is_checkpoint():
        return load_image_model(specs[0], device)
    if len(specs) > 1 and any(not s.is_checkpoint() or s.weights or s.pretrained or s.config for s in specs):
        raise WvError("several --model must each be a `wv train` checkpoint file (their probabilities are averaged); score a CLIP model on its own")
    try:
        return Ensemble([s.model for s in specs], device)
    except WvError as error:
        hint = "; for open_clip weights give --model NAME --weights FILE" if "is not a wv checkpoint" in str(error) else ""
        raise WvError(f"{error}{hint}") from None


def score_shards(root: Root, name: str, scorer: Scorer, shards: list, batch_size: int, loader_workers: int) -> int:
    """Write the confidence sidecars of `shards`; returns the samples done."""

    def write(shard, out):
        frame = pl.DataFrame(
            {
                "__key__": sidecars.shard_keys(root, shard),
                "p_label": pl.Series(out["p_label"], dtype=pl.Float32),
                "top1": pl.Series(out["top1"], dtype=pl.Int32),
                "p_top1": pl.Series(out["p_top1"], dtype=pl.Float32),
            }
        )
        sidecars.write_scores(root, name, shard, frame.with_columns(pl.when(pl.col("top1") >= 0).then(pl.col("top1")).alias("top1")))

    return map_images(root, scorer.model, shards, scorer, write, batch_size, loader_workers, desc=f"confidence {scorer.model.kind}")
