"""Plain webdataset shards (URLs, globs, brace patterns) that have no manifest: whole-shard streaming.

Without per-sample metadata every sample weighs the same and a shard can only be read from its
start. An epoch is still planned so that every rank yields the same number of batches:

    sizes    samples per shard, counted once by reading the shards (no decoding), unless the
             config gives --epoch-size (then shards are taken to be of equal size)
    steps    epoch size / (world size x batch size), rounded by --rounding
    slots    one slot per (rank, loader worker); shards in a seeded order, each to the slot with
             the fewest samples so far (largest first); with fewer shards than slots, slots share
             a shard and each keeps every k-th sample of it
    stream   a slot reads its shards (again, reshuffled, if its quota is not met), through a seeded
             shuffle buffer of --shuffle-window samples, and stops at exactly its quota of batches

The order a slot produces depends on the number of loader workers (slots are per worker), so a
mid-epoch resume needs the same number of workers; an epoch-boundary resume does not.
"""

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
import webdataset as wds

from wv.errors import WvError
from wv.progress import bar_options
from wv.runtime import rng
from wv.shards.read import shard_samples
from wv.stream.config import URL_BUFFER, SamplerConfig
from wv.stream.range_reader import label_of

SHARDS, SHUFFLE = 2, 4  # rng streams


def scan(urls: list, progress: bool = False) -> tuple[list, list]:
    """Samples and labels (.cls, -1 where absent) of every shard: a read without decoding."""
    from tqdm import tqdm

    counts, labels = [], []
    for url in tqdm(urls, desc="stream: count samples", **bar_options(progress)):
        try:
            found = [label_of(sample) for sample in shard_samples(url)]
        except Exception as error:  # a missing or damaged shard: one sentence, not a traceback
            raise WvError(f"cannot read shard {url}: {error}") from None
        counts.append(len(found))
        labels.append(np.asarray(found, dtype=np.int32))
    return counts, labels


@dataclass(frozen=True)
class Part:
    shard: int  # index into urls
    every: int  # keep every `every`-th sample ...
    phase: int  # ... starting at this one


class UrlPlanner:
    def __init__(self, urls: list, config: SamplerConfig, world_size: int = 1, progress: bool = False):
        needs = config.needs_root
        if needs:
            raise WvError(f"{', '.join(needs)} need(s) a dataset root with a manifest and score sidecars; plain shard URLs are streamed whole with equal weights")
        if world_size < 1:
            raise WvError("--world-size must be at least 1")
        self.urls, self.config, self.world_size = list(urls), config, world_size
        self.counts, self.labels = (None, None) if config.epoch_size else scan(self.urls, progress)
        if self.counts is not None and sum(self.counts) == 0:
            raise WvError("the shards hold no samples")

    def data_fingerprint(self) -> str:
        """A hash of the shard list and sizes (a resume state must match it)."""
        text = "\n".join(self.urls) + "\n" + ",".join(map(str, self.counts or []))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    @property
    def buffer(self) -> int:
        return self.config.shuffle_window or URL_BUFFER

    def steps(self, epoch: int = 0) -> int:
        size = self.config.epoch_size or sum(self.counts)
        per_step = self.world_size * self.config.batch_size
        steps = -(-size // per_step) if self.config.rounding == "pad" else size // per_step
        if steps == 0:
            raise WvError(f"the epoch has {size} samples, fewer than one batch on each of {self.world_size} rank(s); use --rounding pad or a smaller --batch-size")
        return steps

    def slots(self, epoch: int, workers: int) -> list[list[Part]]:
        """Parts of shards for each slot (rank * workers + worker)."""
        n_slots, n_shards = self.world_size * workers, len(self.urls)
        order = rng(self.config.seed, epoch, SHARDS).permutation(n_shards)
        if n_shards < n_slots:
            sharing = [len(range(s, n_slots, n_shards)) for s in range(n_shards)]
            return [[Part(int(order[j % n_shards]), sharing[j % n_shards], j // n_shards)] for j in range(n_slots)]
        sizes = self.counts if self.counts is not None else [1] * n_shards
        slots, load = [[] for _ in range(n_slots)], np.zeros(n_slots, dtype=np.int64)
        for shard in sorted(order.tolist(), key=lambda s: -sizes[s]):  # stable: equal sizes stay in seeded order
            target = int(np.argmin(load))
            slots[target].append(Part(shard, 1, 0))
            load[target] += sizes[shard]
        return slots

    def quota(self, steps: int, worker: int, workers: int) -> int:
        """Batches of a worker: batches worker, worker + workers, ... of the rank's epoch."""
        return len(range(worker, steps, workers))

    def samples(self, epoch: int, rank: int, worker: int, workers: int, start: int, read=shard_samples):
        """The slot's raw samples for this epoch after the first `start` batches of the rank, each
        tagged with its step; `read(url)` yields a shard's samples (raw dicts, or metadata for plans)."""
        steps = self.steps(epoch)
        parts = self.slots(epoch, workers)[rank * workers + worker]
        quota = self.quota(steps, worker, workers) * self.config.batch_size
        done = self.quota(start, worker, workers) * self.config.batch_size
        stream = spread(self.laps(parts, epoch, rank, worker, read), self.config.batch_size)
        for i, sample in enumerate(itertools.islice(stream, done, quota), start=done):
            sample["__step__"] = worker + (i // self.config.batch_size) * workers
            yield sample

    def laps(self, parts: list, epoch: int, rank: int, worker: int, read):
        """The slot's shards again and again, each lap in a seeded shard order through a seeded
        shuffle buffer of its own (so the copies of a sample come from different laps)."""
        for lap in itertools.count():
            generator = rng(self.config.seed, epoch, SHUFFLE, rank, worker, lap)
            order = generator.permutation(len(parts))
            seed = int(generator.integers(2**63))
            produced = 0
            for sample in wds.filters.shuffle(self.buffer, initial=self.buffer, seed=seed)(self.lap(parts, order, read)):
                produced += 1
                yield sample
            if produced == 0:
                raise WvError(f"shard(s) {', '.join(self.urls[p.shard] for p in parts)} hold no samples for this slot")

    def lap(self, parts: list, order, read):
        for p in order:
            part = parts[p]
            for i, sample in enumerate(read(self.urls[part.shard])):
                if i % part.every == part.phase:
                    yield sample


def spread(samples, batch_size: int):
    """Delay a sample whose key is already in the batch being filled (a copy from the next lap),
    unless nothing else is at hand; the order stays a function of the input."""
    pending, in_batch, position = [], set(), 0
    for sample in samples:
        pending.append(sample)
        while pending:
            pick = next((i for i, s in enumerate(pending) if s["__key__"] not in in_batch), None)
            if pick is None:
                if len(pending) <= batch_size:
                    break
                pick = 0
            chosen = pending.pop(pick)
            in_batch.add(chosen["__key__"])
            position += 1
            if position % batch_size == 0:
                in_batch.clear()
            yield chosen
