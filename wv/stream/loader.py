"""The stream: one rank's batches, epoch after epoch, identical on a re-run and resumable at any batch.

    stream = Stream(ROOT, SamplerConfig(batch_size=256, class_balance="draw"), transform=train_transform, workers=8)
    stream.load_state_dict(checkpoint["stream"])       # optional: carry on where a run stopped
    while stream.epoch < epochs:
        for batch in stream:                           # the (rest of the) current epoch
            loss = (criterion(model(batch["image"]), batch["label"]) * batch["weight"]).mean()
            ...
            checkpoint["stream"] = stream.state_dict() # {epoch, step, ...}: a few numbers

Rank and world size come from torch.distributed (or RANK / WORLD_SIZE), and every rank gets the
same number of batches per epoch (`len(stream)`), so DDP never waits on a rank that ran dry.

Inside each DataLoader worker, a batch is made:
    on a dataset root   one planned step at a time: its byte ranges read, each image decoded and
                        transformed, its metadata (label, weight, subset, row, score columns) sliced
                        from the plan
    on plain URLs       whole shards through a shuffle buffer, then webdataset.map and .batched
each sample's random state seeded by (seed, epoch, step, position). Worker w of n produces batches
start+w, start+w+n, ... and the DataLoader hands them out in turn, so on a dataset root the batches
(augmentations included) do not depend on the number of workers. When the Stream iterates, the
workers stack images into buffers they reuse, which the main process copies out (wv.stream.lending).
"""

import contextlib
import functools
import pickle
import random
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wv.atomic import write_bytes
from wv.errors import WvError
from wv.jpeg import DecodeFailed
from wv.runtime import check_processes, derive_seed, derive_seeds, rank_and_world, unwrap_errors
from wv.shards.read import shard_urls
from wv.shards.root import Root
from wv.stream.config import SamplerConfig
from wv.stream.lending import BatchPool, Lent, stack
from wv.stream.range_reader import RangeReader, decode_image, image_bytes, label_of, open_image, undecodable
from wv.stream.sampling import Planner, RankPlan
from wv.stream.table import load_table
from wv.stream.urls import UrlPlanner

STATE_FORMAT = "wv-stream/1"


def seed_everything(seed: int) -> None:
    """Seed the torch / random / numpy states a transform draws from (per sample)."""
    torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)


@contextlib.contextmanager
def callers_random_kept(keep: bool):
    """Restore the caller's random states afterwards (when the pipeline runs in the caller's process)."""
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state()) if keep else None
    try:
        yield
    finally:
        if saved is not None:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


def planned_batches(plan: RankPlan, first: int, every: int, prepare: "Prepare", images_of):
    """Batches first, first+every, ... read by byte range, prepared, their metadata sliced from the plan
    (the fields of `collate`, in its order); images_of: the prepared images -> the batch's images."""
    reader = RangeReader(plan.shard_paths)
    try:
        for step in range(first, plan.steps, every):
            before = reader.bytes_read
            raw = reader.read(plan.shard[step], plan.offset[step], plan.length[step])
            keys = [sample["__key__"] for sample in raw]
            shards = [plan.shard_paths[shard] for shard in plan.shard[step].tolist()]
            seeds = derive_seeds((prepare.seed, prepare.epoch, step), range(len(raw))).tolist()
            images = [prepare.image(image_bytes(sample), keys[at], shards[at], seeds[at]) for at, sample in enumerate(raw)]
            yield {
                "image": images_of(images),
                "label": plan.label[step].astype(np.int64),
                "weight": plan.weight[step].astype(np.float32),
                "subset": plan.subset[step].astype(np.int64),
                "row": plan.rows[step].astype(np.int64),
                "key": keys,
                "step": step,
                "read_bytes": reader.bytes_read - before,
                **{name: values[step].astype(np.float32) for name, values in plan.columns.items()},
            }
    finally:
        reader.close()


def url_samples(planner: UrlPlanner, epoch: int, rank: int, start: int, worker: int, workers: int, batch_size: int):
    """Raw samples of a plain-URL slot, with the fields `collate` makes a batch of."""
    virtual = (start + worker) % workers  # the DataLoader asks worker 0 first, whatever `start` is
    position = 0
    for sample in planner.samples(epoch, rank, virtual, workers, start):
        yield {
            "__key__": sample["__key__"],
            "__image__": image_bytes(sample),
            "__step__": sample["__step__"],
            "__shard__": sample.get("__url__"),
            "__position__": position % batch_size,
            "row": -1,
            "label": label_of(sample),
            "weight": 1.0,
            "subset": -1,
            "columns": {},
            "read_bytes": sum(len(v) for v in sample.values() if isinstance(v, bytes)),
        }
        position += 1


class Prepare:
    """Decode and transform one sample, its random state seeded by (seed, epoch, step, position)."""

    def __init__(self, transform, seed: int, epoch: int):
        self.transform, self.seed, self.epoch = transform, seed, epoch

    def __call__(self, sample: dict) -> dict:
        seed = None if self.transform is None else derive_seed(self.seed, self.epoch, sample["__step__"], sample["__position__"])
        sample["image"] = self.image(sample.pop("__image__"), sample["__key__"], sample["__shard__"], seed)
        return sample

    def image(self, data: bytes, key: str, shard: str, seed: int | None):
        """`seed`: derive_seed(seed, epoch, step, position in the batch), the sample's random state (unused,
        and None from the plain-URL path, without a transform)."""
        if self.transform is None:
            return torch.from_numpy(np.asarray(decode_image(data, key, shard)).copy()).permute(2, 0, 1)
        seed_everything(seed)
        return self.transformed(data, key, shard)

    def transformed(self, data: bytes, key: str, shard: str):
        """A transform that decodes for itself (at the scale its random crop allows) gets the bytes, or the image undecoded."""
        if getattr(self.transform, "accepts_bytes", False):
            source = data
        elif getattr(self.transform, "accepts_unloaded", False):
            source = open_image(data, key, shard)
        else:
            return self.transform(decode_image(data, key, shard))
        try:
            return self.transform(source)
        except DecodeFailed as error:
            raise undecodable(error, key, shard) from None


def batch_images(images: list, lend=None):
    """Images of one shape stacked in their own memory layout: in a worker into a buffer lent to the main
    process (`lend`, see wv.stream.lending), else into new (shared) memory; a list when sizes differ."""
    if not all(isinstance(i, torch.Tensor) and i.shape == images[0].shape for i in images):
        return images
    return lend(images) if lend is not None else stack(images, shared=get_worker_info() is not None)


def collate(samples: list, images_of=batch_images) -> dict:
    """One batch (of plain-URL samples). The small per-sample fields travel as numpy arrays (pickled inline,
    where a tensor from a loader worker costs a shared-memory file each) and become tensors in `as_tensors`."""
    batch = {
        "image": images_of([s["image"] for s in samples]),
        "label": np.array([s["label"] for s in samples], dtype=np.int64),
        "weight": np.array([s["weight"] for s in samples], dtype=np.float32),
        "subset": np.array([s["subset"] for s in samples], dtype=np.int64),
        "row": np.array([s["row"] for s in samples], dtype=np.int64),
        "key": [s["__key__"] for s in samples],
        "step": samples[0]["__step__"],
        "read_bytes": sum(s["read_bytes"] for s in samples),
    }
    for name in samples[0]["columns"]:
        batch[name] = np.array([s["columns"][name] for s in samples], dtype=np.float32)
    return batch


def as_is(batch: dict) -> dict:
    """The DataLoader's collate_fn: a worker's batch as it is (DataLoader's default would turn its numpy
    fields into tensors in the worker, each then sent as a shared-memory file)."""
    return batch


def as_tensors(batch: dict) -> dict:
    """The numpy fields of a batch as tensors (no copy), lent images copied out (their buffer given back)."""
    return {name: torch.from_numpy(value) if isinstance(value, np.ndarray) else value.take() if isinstance(value, Lent) else value for name, value in batch.items()}


class EpochDataset(IterableDataset):
    """What each DataLoader worker runs: batches start+w, start+w+n, ... of one rank's epoch."""

    def __init__(self, source, epoch: int, rank: int, start: int, config: SamplerConfig, transform=None, pool: BatchPool | None = None):
        self.source, self.epoch, self.rank, self.start = source, epoch, rank, start  # source: RankPlan | UrlPlanner
        self.config, self.transform, self.pool = config, transform, pool  # pool: the workers lend their batches

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        prepare = Prepare(self.transform, self.config.seed, self.epoch)
        lend = functools.partial(self.pool.lend, worker=worker) if self.pool is not None and info is not None else None
        images_of = functools.partial(batch_images, lend=lend)
        if isinstance(self.source, RankPlan):
            batches = planned_batches(self.source, self.start + worker, workers, prepare, images_of)
        else:
            samples = url_samples(self.source, self.epoch, self.rank, self.start, worker, workers, self.config.batch_size)
            collation = functools.partial(collate, images_of=images_of)
            batches = iter(wds.DataPipeline(lambda: samples, wds.map(prepare), wds.batched(self.config.batch_size, collation_fn=collation, partial=False)))
        while True:
            with callers_random_kept(info is None):  # in this process: leave the trainer's random states alone
                batch = next(batches, None)
            if batch is None:
                return
            batch["epoch"] = self.epoch
            yield batch


def checked_draw_weight(weights, samples: int) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (samples,):
        raise ValueError(f"draw_weight must hold one value per sample ({samples}), not shape {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("draw_weight must be finite and 0 or more")
    return weights


class PersistentDataset(IterableDataset):
    """What persistent DataLoader workers run, epoch after epoch: each pass reads where to start
    (epoch, first batch, whether to lend the batches) from shared memory and, on a dataset root, that
    epoch's rank plan from the file the Stream wrote for it (planned once, in the Stream's process),
    then runs EpochDataset."""

    def __init__(self, urls: UrlPlanner | None, rank: int, config: SamplerConfig, transform, plan_dir: str, pool: BatchPool):
        self.urls, self.rank, self.config, self.transform, self.plan_dir = urls, rank, config, transform, plan_dir
        self.position = torch.zeros(3, dtype=torch.int64).share_memory_()  # epoch, start, lend
        self.pool = pool
        self.cached: tuple[int, RankPlan] | None = None  # in each worker: the plan of the epoch it runs

    def __iter__(self):
        epoch, start, lend = (int(v) for v in self.position.tolist())
        if self.urls is not None:
            source = self.urls
        else:
            if self.cached is None or self.cached[0] != epoch:
                self.cached = None
                with open(plan_file(self.plan_dir, epoch), "rb") as file:
                    self.cached = (epoch, pickle.load(file))
            source = self.cached[1]
        yield from EpochDataset(source, epoch, self.rank, start, self.config, self.transform, self.pool if lend else None)


def plan_file(plan_dir: str, epoch: int) -> Path:
    return Path(plan_dir) / f"rank-plan-{epoch}.pickle"


class Stream:
    """One rank's batches of a dataset root or of plain shard URLs (see the module docstring).

    source      a dataset root, or shard URLs (a list, a glob, a {000..009} pattern)
    config      SamplerConfig (batch size, selection, weighting, curriculum, gates ...)
    rank, world_size   default: torch.distributed, else RANK / WORLD_SIZE, else 0 of 1
    transform   applied to each decoded PIL RGB image (e.g. torchvision RandomResizedCrop + ToTensor);
                one with `accepts_bytes = True` (wv.train.crops.train_transform) gets the sample's bytes,
                one with `accepts_unloaded = True` the image with only its header read; either decodes
                it itself, at the DCT scale its crop allows (DecodeFailed if it cannot);
                None gives uint8 CHW tensors (a list when sizes differ)
    workers, pin_memory, prefetch_factor   DataLoader settings (workers=0: in this process)
    draw_weight a factor of every sample's draw weight (dataset roots: one value, 0 or more, per sample of the
                split in shard order), e.g. a pre-training task's balance over keywords; part of the data fingerprint
    persistent_workers   keep the loader workers from one epoch (and one `iter`) to the next: no
                start-up per epoch; each epoch's plan reaches them through a file in a private
                temporary folder (removed with the Stream). The batches are the same either way.
    """

    def __init__(
        self,
        source,
        config: SamplerConfig | None = None,
        *,
        rank=None,
        world_size=None,
        transform=None,
        workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
        progress: bool = False,
        draw_weight=None,
    ):
        self.config = config or SamplerConfig()
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.transform, self.workers, self.pin_memory, self.prefetch_factor = transform, workers, pin_memory, prefetch_factor
        check_processes(workers, "--workers")
        if isinstance(source, (str, Path)) and Root(source).exists():
            self.kind = "root"
            table = load_table(source, self.config)
            if draw_weight is not None:
                table.draw_weight = checked_draw_weight(draw_weight, table.size)
            self.planner = Planner(table, self.config, self.world_size)
        else:
            if draw_weight is not None:
                raise WvError("a per-sample draw weight needs a dataset root; plain shard URLs are streamed whole")
            self.kind = "urls"
            urls = [str(u) for u in source] if isinstance(source, (list, tuple)) else shard_urls(source, self.config.split)
            self.planner = UrlPlanner(urls, self.config, self.world_size, progress=progress)
        self.epoch, self.step = 0, 0
        self._plan: RankPlan | None = None
        self.persistent_workers = persistent_workers and workers > 0
        self._persistent: tuple[PersistentDataset, DataLoader] | None = None
        self._started: tuple[int, int, Iterator] | None = None  # (epoch, step, batches) begun by start()

    # -- the plan ------------------------------------------------------------------------------
    def steps(self, epoch: int | None = None) -> int:
        """Batches per rank in an epoch (the current one by default); the same on every rank."""
        return self.planner.steps(self.epoch if epoch is None else epoch)

    def __len__(self) -> int:
        return self.steps()

    def rank_plan(self, epoch: int) -> RankPlan:
        """This rank's planned batches of an epoch (dataset roots only)."""
        if self.kind != "root":
            raise WvError("plain shard URLs have no per-sample plan; they are streamed whole")
        if self._plan is None or self._plan.epoch != epoch:
            self._plan = None  # free the previous epoch's plan first
            self._plan = self.planner.rank_plan(self.planner.plan(epoch), self.rank)
        return self._plan

    def dataset(self, epoch: int | None = None, start: int | None = None) -> EpochDataset:
        """The IterableDataset of an epoch from batch `start` (default: the current position)."""
        epoch = self.epoch if epoch is None else epoch
        start = self.step if start is None else start
        source = self.rank_plan(epoch) if self.kind == "root" else self.planner
        return EpochDataset(source, epoch, self.rank, start, self.config, self.transform)

    def loader(self, epoch: int | None = None, start: int | None = None, *, lend: bool = False) -> DataLoader:
        """A DataLoader over `dataset()`: batches in order, one per worker in turn (with persistent
        workers: the Stream's one DataLoader, pointed at this epoch and batch). lend=True (the Stream's own
        iteration): the workers lend their batches' images (wv.stream.lending), which `as_tensors` copies out."""
        if self.persistent_workers:
            return self.persistent_loader(self.epoch if epoch is None else epoch, self.step if start is None else start, lend)
        dataset = self.dataset(epoch, start)
        extra = {"prefetch_factor": self.prefetch_factor} if self.workers else {}
        if self.workers and lend:
            dataset.pool = self.batch_pool()
        return DataLoader(dataset, batch_size=None, collate_fn=as_is, num_workers=self.workers, pin_memory=self.pin_memory, persistent_workers=False, **extra)

    def batch_pool(self) -> BatchPool:
        """Buffers for the batches each worker can have in flight (prefetch_factor), and the one it fills."""
        return BatchPool(self.workers, self.prefetch_factor + 1)

    def persistent_loader(self, epoch: int, start: int, lend: bool = False) -> DataLoader:
        if self._persistent is None:
            plan_dir = tempfile.mkdtemp(prefix="wv-stream-plans-")
            weakref.finalize(self, shutil.rmtree, plan_dir, True)
            dataset = PersistentDataset(self.planner if self.kind == "urls" else None, self.rank, self.config, self.transform, plan_dir, self.batch_pool())
            self._persistent = (
                dataset,
                DataLoader(dataset, batch_size=None, collate_fn=as_is, num_workers=self.workers, pin_memory=self.pin_memory, persistent_workers=True, prefetch_factor=self.prefetch_factor),
            )
        dataset, loader = self._persistent
        if self.kind == "root" and not plan_file(dataset.plan_dir, epoch).is_file():
            for old in Path(dataset.plan_dir).glob("rank-plan-*.pickle"):  # the workers keep the plan they run in memory
                old.unlink()
            write_bytes(plan_file(dataset.plan_dir, epoch), pickle.dumps(self.rank_plan(epoch), protocol=pickle.HIGHEST_PROTOCOL))
        dataset.position.copy_(torch.tensor([epoch, start, int(lend)]))
        return loader

    # -- iteration and state -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its first batch on the next iteration."""
        self.epoch, self.step = epoch, 0

    def start(self) -> None:
        """Set the loader workers to work on the current position now (e.g. while the trainer validates and
        writes a checkpoint between epochs); the next iteration takes over what they made. The batches are the same."""
        if self._started is None or self._started[:2] != (self.epoch, self.step):
            self._started = (self.epoch, self.step, iter(self.loader(self.epoch, self.step, lend=True)))

    def __iter__(self):
        """The rest of the current epoch; afterwards the stream stands at the start of the next one."""
        epoch, steps = self.epoch, self.steps()
        started, self._started = self._started, None
        batches = started[2] if started is not None and started[:2] == (epoch, self.step) else self.loader(epoch, self.step, lend=True)
        for batch in unwrap_errors(batches):  # a loader worker's WvError as one sentence
            if batch["step"] != self.step:
                raise RuntimeError(f"stream out of order: got step {batch['step']}, expected {self.step}")
            self.step += 1
            yield as_tensors(batch)
        if self.step != steps:
            raise RuntimeError(f"epoch {epoch} ended after {self.step} of {steps} batches")
        self.epoch, self.step = epoch + 1, 0

    def state_dict(self) -> dict:
        """Where the stream stands: enough to regenerate the plan and skip to the next batch."""
        state = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.config.seed,
            "config": self.config.fingerprint(),
            "data": self.planner.data_fingerprint(),
            "world_size": self.world_size,
            "batch_size": self.config.batch_size,
            "source": self.kind,
        }
        if self.kind == "urls":
            state["workers"] = self.workers
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved state: mid-epoch it must come from the same config, world size
        (and, for plain URLs, the same number of workers); at an epoch boundary anything may change."""
        if state.get("format") != STATE_FORMAT:
            raise WvError("the stream state was not written by this version of wv (no wv-stream/1 format)")
        epoch, step = int(state["epoch"]), int(state["step"])
        if step:
            checks = [
                ("config", self.config.fingerprint(), "sampler options"),
                ("world_size", self.world_size, "world size"),
                ("source", self.kind, "kind of source"),
                ("data", self.planner.data_fingerprint(), "selection or scores (the sidecars changed)"),
            ]
            if self.kind == "urls":
                checks.append(("workers", self.workers, "number of loader workers"))
            for key, now, what in checks:
                if state.get(key) != now:
                    raise WvError(f"the stream state is {step} batches into epoch {epoch} with another {what} ({state.get(key)} then, {now} now); resume with the same, or from an epoch boundary")
            if step > self.steps(epoch):
                raise WvError(f"the stream state is at batch {step} of epoch {epoch}, which has only {self.steps(epoch)}")
        self.epoch, self.step = epoch, step
        if step and step == self.steps(epoch):
            self.epoch, self.step = epoch + 1, 0
