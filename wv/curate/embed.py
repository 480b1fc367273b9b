"""`wv embed`: image features per shard, ROOT/features/{name}/{shard}.npy (float16, shard order).

The model is an open_clip model (a name plus a local weights file or a pretrained tag; a custom
architecture from a config JSON) or a `wv train` checkpoint (wv/models.py: the penultimate layer).
CLIP features are the L2-normalised image embedding; checkpoint features are the raw input of the
classifier.

Images are decoded from the shards with the model's own evaluation preprocessing, in DataLoader
workers (`loader_workers`), each worker reading whole shards; the model runs in batches on the GPU
when there is one. Under torchrun each rank takes a disjoint share of the shards (RANK, WORLD_SIZE
from the environment; no process group is needed) and a re-run skips the shards already written.
The same loop (`map_images`) serves `wv score confidence`.
"""

import contextlib
import hashlib
import io
import os
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from wv.errors import WvError
from wv.runtime import check_seed, one_thread, pick_device, rank_and_world, unwrap_errors
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "embed"


@dataclass(frozen=True)
class ModelSpec:
    """Which model: a wv checkpoint path, or an open_clip name (+ weights file, pretrained tag, config JSON)."""

    model: str | None = None
    weights: str | None = None
    pretrained: str | None = None
    config: str | None = None

    def is_checkpoint(self) -> bool:
        return self.model is not None and self.config is None and Path(self.model).is_file()

    def fingerprint(self) -> dict:
        """The options recorded with the features: names, and the sha256 of every file used."""
        files = {k: v for k, v in asdict(self).items() if v and k != "pretrained" and Path(v).is_file()}
        return {**asdict(self), "sha256": {k: file_sha256(v) for k, v in sorted(files.items())}}


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ImageModel:
    """A loaded model: `preprocess` (PIL image -> tensor), `features(images)`, `logits(images)`."""

    def __init__(self, kind: str, net, preprocess, device, checkpoint: dict | None = None, name: str = ""):
        self.kind, self.net, self.preprocess, self.device = kind, net, preprocess, device
        self.checkpoint, self.name = checkpoint, name

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            return self.net.encode_image(images, normalize=True)
        from wv.models import penultimate

        return penultimate(self.net, images)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Checkpoints only (CLIP needs a zero-shot head, see wv.curate.confidence)."""
        return self.net(images)

    def feature_dim(self) -> int:
        probe = torch.zeros(1, *self.input_shape(), device=self.device)
        return int(self.features(probe).shape[1])

    def input_shape(self) -> tuple:
        image = Image.new("RGB", (64, 64))
        return tuple(self.preprocess(image).shape)


def load_image_model(spec: ModelSpec, device: torch.device) -> ImageModel:
    if spec.is_checkpoint():
        from wv.models import default_input, eval_transform, load_checkpoint

        try:
            net, checkpoint = load_checkpoint(spec.model, map_location=device)
        except WvError as error:
            hint = "; for open_clip weights give --model NAME --weights FILE" if "is not a wv checkpoint" in str(error) else ""
            raise WvError(f"{error}{hint}") from None
        preprocess = eval_transform(checkpoint.get("input") or default_input(checkpoint["arch"]))
        return ImageModel("checkpoint", net, preprocess, device, checkpoint, checkpoint["arch"])
    return load_clip(spec, device)


def load_clip(spec: ModelSpec, device: torch.device) -> ImageModel:
    import open_clip

    name = spec.model
    schema = bool(name) and name.startswith(("local-dir:", "hf-hub:"))  # open_clip reads config and weights from there
    if name and not spec.config and not schema and (os.sep in name or name.endswith((".pt", ".pth", ".ckpt", ".bin"))):
        raise WvError(f"model file {name} does not exist")
    if spec.config:
        if not Path(spec.config).is_file():
            raise WvError(f"model config {spec.config} does not exist")
        open_clip.add_model_config(spec.config)
        name = name or Path(spec.config).stem
    if not name:
        raise WvError("give --model: an open_clip model name or a wv checkpoint file")
    if not schema and name not in open_clip.list_models():
        hint = "" if spec.config else "; a file path must be a wv checkpoint, a custom architecture needs --model-config"
        raise WvError(f"{name!r} is neither a wv checkpoint file nor an open_clip model name{hint}")
    if spec.weights and spec.pretrained:
        raise WvError("give --weights FILE or --pretrained TAG, not both")
    if spec.weights and not Path(spec.weights).is_file():
        raise WvError(f"weights file {spec.weights} does not exist")
    if not (spec.weights or spec.pretrained or schema):
        raise WvError(f"open_clip model {name} needs --weights FILE or --pretrained TAG (random weights give meaningless features)")
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=spec.weights or spec.pretrained, device=device)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        raise WvError(f"cannot load open_clip {name} with {spec.weights or spec.pretrained}: {str(error).splitlines()[0][:160]}") from None
    return ImageModel("clip", net.eval(), preprocess, device, name=name)


# -- decoding shards ------------------------------------------------------------------------------
class ShardImages(torch.utils.data.IterableDataset):
    """Batches of preprocessed images: {shard, start, total, images, labels}; each worker reads whole shards."""

    def __init__(self, root: str, shards: list[tuple[str, int]], preprocess, batch_size: int):
        self.root, self.shards, self.preprocess, self.batch_size = root, shards, preprocess, batch_size

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        mine = self.shards[worker.id::worker.num_workers] if worker else self.shards
        for shard, total in mine:
            yield from self.shard_batches(shard, total)

    def shard_batches(self, shard: str, total: int):
        root = Root(self.root)
        keys = sidecars.shard_keys(root, shard).to_list()
        if len(keys) != total:
            raise WvError(f"{shard}: meta has {len(keys)} samples, shards.parquet {total}; run `wv shard verify`")
        images, labels, start = [], [], 0
        if total == 0:
            yield {"shard": shard, "start": 0, "total": 0, "images": None, "labels": None}
        for index, sample in enumerate(tar_samples(root.shard_path(shard))):
            if index >= total or sample["__key__"] != keys[index]:
                raise WvError(f"{shard} does not match its meta sidecar at sample {index}; run `wv shard verify`")
            images.append(self.decode(shard, sample))
            labels.append(int(sample["cls"]))
            if len(images) == self.batch_size or index == total - 1:
                yield {"shard": shard, "start": start, "total": total, "images": torch.stack(images), "labels": torch.tensor(labels)}
                start, images, labels = index + 1, [], []
        if start != total:
            raise WvError(f"{shard} holds fewer samples than its meta sidecar; run `wv shard verify`")

    def decode(self, shard: str, sample: dict) -> torch.Tensor:
        try:
            with Image.open(io.BytesIO(sample["jpg"])) as image:
                return self.preprocess(image)
        except Exception as error:  # PIL raises many types for damaged bytes
            raise WvError(f"{shard}: image {sample['__key__']} cannot be decoded ({error}); run `wv shard verify`") from None


def tar_samples(path):
    """The samples of one tar, in order, as {ext: bytes, "__key__": key}: read straight, so that neither
    DataLoader workers nor torchrun ranks split it (webdataset's readers would)."""
    sample = {}
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample.setdefault("__key__", key)
            sample[ext] = tar.extractfile(member).read()
    if sample:
        yield sample


def my_shards(root: Root, kind: str, name: str, options: dict, overwrite: bool, split: str, command: str) -> tuple[list, int, int]:
    """This rank's share of the split's shards that still lack a sidecar: [(shard, samples)], rank, world."""
    rank, world = rank_and_world()
    if overwrite and world > 1:
        raise WvError("--overwrite cannot run under torchrun (ranks would delete each other's work); run it once without torchrun")
    todo = set(sidecars.begin_run(root, kind, name, options, overwrite, split, command=command))
    shards = root.shards(split)
    share = [(row["name"], row["samples"]) for i, row in enumerate(shards.iter_rows(named=True)) if i % world == rank]
    return [s for s in share if s[0] in todo], rank, world


def check_loader(batch_size: int, loader_workers: int) -> None:
    if batch_size < 1 or loader_workers < 0:
        raise WvError("--batch-size must be at least 1 and --loader-workers at least 0")


def rank_lock(root: Root, command: str):
    """The root's writer lock, held by rank 0 (under torchrun the ranks of one run write side by side)."""
    return writing(root, command) if rank_and_world()[0] == 0 else contextlib.nullcontext()


def map_images(root: Root, model: ImageModel, shards: list, compute, write, batch_size: int = 256,
               loader_workers: int = 0, desc: str = "images") -> int:
    """Run `compute(images, labels) -> {column: array}` over every image of `shards`; call
    `write(shard, {column: array in shard order})` once a shard is complete. Returns samples done."""
    check_loader(batch_size, loader_workers)
    dataset = ShardImages(str(root.path), shards, model.preprocess, batch_size)
    # spawn, not fork: a forked worker inherits the parent's OpenMP thread pool and can hang in it.
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=loader_workers, pin_memory=model.device.type == "cuda",
                                         multiprocessing_context="spawn" if loader_workers else None, worker_init_fn=one_thread)
    parts: dict[str, list] = {}  # shard -> [(start, outputs)] until the shard is complete
    rows_in: dict[str, int] = {}
    done = 0
    with tqdm(total=sum(n for _, n in shards), desc=desc, unit="img", dynamic_ncols=True) as bar:
        for batch in unwrap_errors(loader):
            shard, total = batch["shard"], batch["total"]
            if total == 0:
                write(shard, compute(None, None))
                continue
            out = compute(batch["images"].to(model.device, non_blocking=True), batch["labels"])
            parts.setdefault(shard, []).append((batch["start"], out))
            rows = len(batch["labels"])
            rows_in[shard] = rows_in.get(shard, 0) + rows
            done += rows
            bar.update(rows)
            if rows_in[shard] == total:
                ordered = [o for _, o in sorted(parts.pop(shard), key=lambda p: p[0])]
                write(shard, {k: np.concatenate([o[k] for o in ordered]) for k in ordered[0]})
    return done


# -- wv embed -----------------------------------------------------------------------------------
def embed(root, spec: ModelSpec, name: str | None = None, split: str = "train", batch_size: int = 256,
          loader_workers: int = 0, device: str = "auto", overwrite: bool = False, seed: int = 0) -> dict:
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
    return {"name": name, "kind": model.kind, "model": model.name, "dim": dim, "device": str(dev), "rank": rank, "world_size": world,
            "shards_written": len(shards), "shards_skipped": skipped, "samples": samples, "seconds": round(seconds, 2),
            "paths": {"features": str(sidecars.sidecar_dir(root, "features", name))}}


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
