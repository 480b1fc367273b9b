"""Batch buffers that a loader worker lends to the main process and refills once the main process has copied
the batch out (as DataLoader's pin_memory copies a batch out of shared memory).

A DataLoader worker that stacks each batch into a new shared-memory tensor pays for fresh pages every time:
the kernel zeroes and maps them one by one (~7 ms for 64 images of 3x224x224, more than the rest of the
hand-over), and the main process maps them again. Here each worker keeps up to `slots` buffers
(prefetch_factor + 1: the batches it can have in flight, and the one it fills):

    worker  takes a buffer that is not on loan (a new one while it has fewer than `slots`; when all are on
            loan, a new unpooled tensor: DataLoader's own hand-over), stacks the images into it and sends
            a Lent: the buffer itself the first time, after that only its number
    main    keeps its one mapping of each buffer; `take` copies the batch into memory of its own (in the
            DataLoader's pinning thread, `pin_memory` copies it into pinned memory) and gives the buffer back

The user only ever holds the copy, which no worker writes to. Each buffer's loan is a semaphore (1: the
worker may fill it): the worker takes it with sem_trywait before it writes, the main process gives it back
with sem_post after its copy (or after dropping a batch unseen, e.g. the prefetched batches a persistent
loader discards when an iteration stops early); POSIX orders memory at both, so a buffer is refilled only
after every read of its last batch.

The copies go into memory the main process reuses once the user has let go of the batch (`copies`: numpy
arrays under the tensors, whose reference count says whether any tensor or view still uses them): fresh
memory for every batch cost as much in page faults as the copy itself.
"""

import itertools
import multiprocessing
import os
import sys
import weakref

import numpy as np
import torch

_POOLS: "weakref.WeakValueDictionary[str, BatchPool]" = weakref.WeakValueDictionary()  # main process: by token
_TOKENS = itertools.count()
KEPT_COPIES = 4  # main process: batch memory kept for reuse (the user's current batch, the next, and spare)


class BatchPool:
    """One DataLoader's buffers: the loans (shared), each worker's own buffers, the main process's mappings."""

    def __init__(self, workers: int, slots: int):
        self.token = f"{os.getpid()}-{next(_TOKENS)}"
        self.free = [[multiprocessing.get_context().Semaphore(1) for _ in range(slots)] for _ in range(workers)]
        self.buffers: list[torch.Tensor] = []  # in a worker: its own
        self.sent: list[bool] = []  # in a worker: whether the main process has the buffer of each slot
        self.mapped: dict[tuple[int, int], torch.Tensor] = {}  # in the main process: every worker's buffers
        self.copies: list[np.ndarray] = []  # in the main process: the memory under the batches handed out
        _POOLS[self.token] = self

    def __getstate__(self) -> dict:
        return {"token": self.token, "free": self.free}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, buffers=[], sent=[], mapped={}, copies=[])

    # -- in a worker ---------------------------------------------------------------------------
    def lend(self, images: list, worker: int):
        """The images stacked into a buffer of this worker's, as a Lent (a new shared tensor when all are on loan)."""
        shape, strides = batch_layout(images)
        slot = self.slot_for(worker, shape, strides, images[0].dtype)
        if slot is None:
            return stack(images, shared=True)
        torch.stack(images, out=self.buffers[slot])
        first, self.sent[slot] = not self.sent[slot], True
        return Lent(self.token, worker, slot, self.buffers[slot] if first else None)

    def slot_for(self, worker: int, shape: tuple, strides: tuple, dtype) -> int | None:
        """A slot whose loan this worker now holds, its buffer of this layout; None when all are on loan."""
        for slot in range(len(self.buffers)):
            if self.free[worker][slot].acquire(block=False):
                if (self.buffers[slot].shape, self.buffers[slot].stride(), self.buffers[slot].dtype) != (shape, strides, dtype):
                    self.buffers[slot], self.sent[slot] = new_batch(shape, strides, dtype, shared=True), False
                return slot
        if len(self.buffers) < len(self.free[worker]) and self.free[worker][len(self.buffers)].acquire(block=False):
            self.buffers.append(new_batch(shape, strides, dtype, shared=True))
            self.sent.append(False)
            return len(self.buffers) - 1
        return None

    # -- in the main process ------------------------------------------------------------------
    def copy_target(self, like: torch.Tensor) -> torch.Tensor:
        """An empty tensor of `like`'s shape, strides and dtype, in memory of a batch the user no longer holds."""
        nbytes = like.untyped_storage().nbytes()
        unused = [at for at in range(len(self.copies)) if not in_use(self.copies, at)]
        if not unused and len(self.copies) >= KEPT_COPIES:
            return torch.empty_strided(like.shape, like.stride(), dtype=like.dtype)
        at = next((at for at in unused if self.copies[at].nbytes == nbytes), None)
        if at is None:  # new memory, in place of an unused batch of another size if the pool is full
            at = unused[0] if len(self.copies) >= KEPT_COPIES else len(self.copies)
            self.copies[at : at + 1] = [np.empty(nbytes, dtype=np.uint8)]
        return tensor_in(self.copies[at], like)


def in_use(arrays: list, at: int) -> bool:
    """Whether anything but the list holds arrays[at]: a tensor or view over it holds it through its storage."""
    return sys.getrefcount(arrays[at]) > 2  # the list and getrefcount's own argument


def tensor_in(memory: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A tensor over `memory` (bytes) with `like`'s shape, strides and dtype; it keeps `memory` referenced."""
    return torch.from_numpy(memory).view(like.dtype).as_strided(like.shape, like.stride())


class Lent:
    """A batch's images in a worker's buffer. In the main process: `take()` (or `pin_memory()`) copies them out
    and gives the buffer back; dropped untaken, it gives the buffer back too."""

    def __init__(self, token: str, worker: int, slot: int, buffer: torch.Tensor | None = None, pool: BatchPool | None = None):
        self.token, self.worker, self.slot, self.buffer, self.pool = token, worker, slot, buffer, pool

    def __reduce__(self):
        return received, (self.token, self.worker, self.slot, self.buffer)

    def take(self, pin: bool = False) -> torch.Tensor:
        """A copy of the images in memory of this process's own (pinned with pin=True); the buffer goes back."""
        if self.pool is None:
            raise RuntimeError("a lent batch was taken twice, or outside the process it was lent to")
        source = self.pool.mapped[self.worker, self.slot]
        copy = torch.empty_strided(source.shape, source.stride(), dtype=source.dtype, pin_memory=True) if pin else self.pool.copy_target(source)
        copy.copy_(source)
        self.give_back()
        return copy

    def pin_memory(self, device=None) -> torch.Tensor:
        """What DataLoader's pinning thread calls: the copy goes straight into pinned memory."""
        return self.take(pin=True)

    def give_back(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.free[self.worker][self.slot].release()

    def __del__(self):
        self.give_back()


def received(token: str, worker: int, slot: int, buffer: torch.Tensor | None) -> Lent:
    """A Lent unpickled in the main process: the buffer's mapping kept (or looked up), the loan to give back."""
    pool = _POOLS.get(token)
    if pool is None:
        raise RuntimeError(f"a batch arrived from a loader whose buffers are gone ({token})")
    if buffer is not None:
        pool.mapped[worker, slot] = buffer
    return Lent(token, worker, slot, pool=pool)


def batch_layout(images: list) -> tuple[tuple, tuple]:
    """Shape and strides of the stacked batch: each image in the memory layout of the first (a channels-last
    [3, H, W] image makes a channels-last batch: copied without a transposition)."""
    like = images[0]
    strides = torch.empty_like(like).stride()  # the first image's own layout where it is dense
    return (len(images), *like.shape), (like.numel(), *strides)


def new_batch(shape: tuple, strides: tuple, dtype, shared: bool = False) -> torch.Tensor:
    if not shared:
        return torch.empty_strided(shape, strides, dtype=dtype)
    size = strides[0] * shape[0] * torch.empty((), dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(size), 0, shape, strides)


def stack(images: list, shared: bool = False) -> torch.Tensor:
    """The images as one batch, in the memory layout of the first (see batch_layout)."""
    shape, strides = batch_layout(images)
    return torch.stack(images, out=new_batch(shape, strides, images[0].dtype, shared))
