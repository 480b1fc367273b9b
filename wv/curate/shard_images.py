"""Every image of a split's shards through an image model, per rank: the loop that `wv embed` and
`wv score confidence` share.

Images are decoded from the shards with the model's own evaluation preprocessing (a JPEG at the
1/2, 1/4 or 1/8 DCT scale that still leaves its short side at least the resize's), in DataLoader
workers (`loader_workers`), each worker reading whole shards; the model runs in batches on the GPU
when there is one. Under torchrun each rank takes a disjoint share of the shards (RANK, WORLD_SIZE
from the environment; no process group is needed) and a re-run skips the shards already written.
"""

import contextlib
import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from wv.errors import WvError
from wv.jpeg import draft_for_short_side, short_side_target
from wv.models import ImageModel
from wv.runtime import check_processes, one_thread, rank_and_world, unwrap_errors
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.read import shard_samples
from wv.shards.root import Root


class ShardImages(torch.utils.data.IterableDataset):
    """Batches of preprocessed images: {shard, start, total, images, labels}; each worker reads whole shards."""

    def __init__(self, root: str, shards: list[tuple[str, int]], preprocess, batch_size: int):
        self.root, self.shards, self.preprocess, self.batch_size = root, shards, preprocess, batch_size
        self.short_side = short_side_target(preprocess)  # JPEGs are decoded at the DCT scale this resize allows

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        mine = self.shards[worker.id :: worker.num_workers] if worker else self.shards
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
        for index, sample in enumerate(shard_samples(root.shard_path(shard))):
            if index >= total or sample["__key__"] != keys[index]:
                raise WvError(f"{shard} does not match its meta sidecar at sample {index}; run `wv shard verify`")
            images.append(self.decode(shard, sample))
            labels.append(int(sample["cls"]))
            if len(images) == self.batch_size or index == total - 1:
                yield {"shard": shard, "start": start, "total": total, "images": stack(images), "labels": torch.tensor(labels)}
                start, images, labels = index + 1, [], []
        if start != total:
            raise WvError(f"{shard} holds fewer samples than its meta sidecar; run `wv shard verify`")

    def decode(self, shard: str, sample: dict) -> torch.Tensor:
        try:
            with Image.open(io.BytesIO(sample["jpg"])) as image:
                if self.short_side:
                    draft_for_short_side(image, self.short_side)
                return self.preprocess(image)
        except Exception as error:  # PIL raises many types for damaged bytes
            raise WvError(f"{shard}: image {sample['__key__']} cannot be decoded ({error}); run `wv shard verify`") from None


def stack(images: list):
    """A batch of preprocessed images: one tensor, or a tuple of them when each image has several views
    (an ensemble whose models preprocess differently, wv.ensemble.Views)."""
    if isinstance(images[0], tuple):
        return tuple(torch.stack(view) for view in zip(*images))
    return torch.stack(images)


def to_device(images, device):
    if isinstance(images, (tuple, list)):  # the loader hands a tuple over as a list
        return tuple(view.to(device, non_blocking=True) for view in images)
    return images.to(device, non_blocking=True)


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
    check_processes(loader_workers, "--loader-workers")


def rank_lock(root: Root, command: str) -> contextlib.AbstractContextManager:
    """The root's writer lock, held by rank 0 (under torchrun the ranks of one run write side by side)."""
    return writing(root, command) if rank_and_world()[0] == 0 else contextlib.nullcontext()


def map_images(
    root: Root,
    model: ImageModel,
    shards: list,
    compute: Callable[[torch.Tensor, torch.Tensor], dict],
    write: Callable[[str, dict], None],
    batch_size: int = 256,
    loader_workers: int = 0,
    desc: str = "images",
) -> int:
    """Run `compute(images, labels) -> {column: array}` over every image of `shards`; call
    `write(shard, {column: array in shard order})` once a shard is complete. Returns samples done."""
    check_loader(batch_size, loader_workers)
    dataset = ShardImages(str(root.path), shards, model.preprocess, batch_size)
    # spawn, not fork: a forked worker inherits the parent's OpenMP thread pool and can hang in it.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=loader_workers, pin_memory=model.device.type == "cuda", multiprocessing_context="spawn" if loader_workers else None, worker_init_fn=one_thread
    )
    parts: dict[str, list] = {}  # shard -> [(start, outputs)] until the shard is complete
    rows_in: dict[str, int] = {}
    done = 0
    with tqdm(total=sum(n for _, n in shards), desc=desc, unit="img", dynamic_ncols=True) as bar:
        for batch in unwrap_errors(loader):
            shard, total = batch["shard"], batch["total"]
            if total == 0:
                write(shard, compute(None, None))
                continue
            out = compute(to_device(batch["images"], model.device), batch["labels"])
            parts.setdefault(shard, []).append((batch["start"], out))
            rows = len(batch["labels"])
            rows_in[shard] = rows_in.get(shard, 0) + rows
            done += rows
            bar.update(rows)
            if rows_in[shard] == total:
                ordered = [o for _, o in sorted(parts.pop(shard), key=lambda p: p[0])]
                write(shard, {k: np.concatenate([o[k] for o in ordered]) for k in ordered[0]})
    return done
