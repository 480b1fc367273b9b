"""Where a process runs: its rank and world size, its device and threads, the errors its workers send
back, and the seeds it derives from --seed. One function for each; torch is imported only when asked.

Seeds: every derived seed is numpy's SeedSequence hash of the integers it is made from, so
`derive_seed(seed, epoch, step)` (one 63-bit integer, for torch and `random`) and `rng(seed, epoch, step)`
(a numpy Generator, the same as `np.random.default_rng([seed, epoch, step])`) are one scheme.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from wv.errors import WvError

SEED_LIMIT = 2**63  # seeds are 0 .. 2**63 - 1 (torch takes signed 64-bit integers)
DEVICE_TYPES = ("cpu", "cuda", "mps")
MAX_PROCESSES = 1024  # local worker processes one command may start: beyond it, a typo (not a machine)

if TYPE_CHECKING:
    import numpy as np
    import torch

T = TypeVar("T")


# -- processes -----------------------------------------------------------------------------------------------
def check_processes(count: int, flag: str, least: int = 0) -> None:
    """One sentence unless `count` local processes (--workers, --loader-workers) is from `least` to MAX_PROCESSES:
    a loader asked for 2**64 workers would otherwise start processes until the machine runs out of memory."""
    if not least <= count <= MAX_PROCESSES:
        raise WvError(f"{flag} must be between {least} and {MAX_PROCESSES:,} (processes on this machine), not {count}")


# -- seeds ---------------------------------------------------------------------------------------------------
def check_seed(seed: object, flag: str = "--seed") -> int:
    """`seed` as an int, or a one-sentence WvError when it is not a whole number in 0 .. 2**63 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise WvError(f"{flag} must be between 0 and 2**63 - 1 (a whole number), not {seed!r}")
    return int(seed)


def derive_seed(*numbers: int) -> int:
    """A 63-bit seed mixed from a few integers that are 0 or more (SeedSequence)."""
    import numpy as np  # here, so that the command line (which checks seeds) is built without numpy

    state = np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


# numpy's SeedSequence constants (numpy/random/bit_generator.pyx), for derive_seeds
INIT_A, MULT_A, INIT_B, MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
MIX_MULT_L, MIX_MULT_R, XSHIFT, POOL_SIZE = 0xCA01F9DD, 0x4973F715, 16, 4


def derive_seeds(prefix: tuple[int, ...], last) -> np.ndarray:
    """`[derive_seed(*prefix, n) for n in last]` at once, as uint64 (each n below 2**32): SeedSequence's
    entropy pool and state words computed for all of them together with numpy's uint32 arithmetic. One
    batch's per-sample seeds cost one call instead of 64 (a SeedSequence each: 20-50 us)."""
    import numpy as np

    last = np.asarray(last, dtype=np.uint64)
    if last.size and int(last.max()) > 0xFFFFFFFF:
        raise ValueError("derive_seeds takes last numbers below 2**32")
    u32 = np.uint32
    entropy = [np.full(last.shape, word, u32) for n in prefix for word in uint32_words(int(n))] + [last.astype(u32)]
    hash_const = u32(INIT_A)

    def hashmix(value):
        nonlocal hash_const
        value = value ^ hash_const
        hash_const = hash_const * u32(MULT_A)
        value = value * hash_const
        return value ^ (value >> u32(XSHIFT))

    def mix(x, y):
        result = u32(MIX_MULT_L) * x - u32(MIX_MULT_R) * y
        return result ^ (result >> u32(XSHIFT))

    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as SeedSequence's does
        pool = [hashmix(entropy[i] if i < len(entropy) else np.zeros(last.shape, u32)) for i in range(POOL_SIZE)]
        for source in range(POOL_SIZE):
            for target in range(POOL_SIZE):
                if source != target:
                    pool[target] = mix(pool[target], hashmix(pool[source]))
        for source in range(POOL_SIZE, len(entropy)):
            for target in range(POOL_SIZE):
                pool[target] = mix(pool[target], hashmix(entropy[source]))
        state, hash_b = [], u32(INIT_B)
        for word in pool[:2]:  # generate_state(1, np.uint64): two uint32 words, low first
            value = word ^ hash_b
            hash_b = hash_b * u32(MULT_B)
            value = value * hash_b
            state.append((value ^ (value >> u32(XSHIFT))).astype(np.uint64))
    return ((state[1] << np.uint64(32)) | state[0]) >> np.uint64(1)


def uint32_words(n: int) -> list[int]:
    """A non-negative integer as SeedSequence reads it: its 32-bit words, lowest first (0: one word)."""
    words = [n & 0xFFFFFFFF]
    while n := n >> 32:
        words.append(n & 0xFFFFFFFF)
    return words


def rng(*numbers: int) -> np.random.Generator:
    """A numpy Generator seeded from a few integers that are 0 or more (the scheme of derive_seed)."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([int(n) for n in numbers]))


# -- rank and world size -------------------------------------------------------------------------------------
def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Rank and world size: as given, else from an initialised torch.distributed process group, else
    from torchrun's RANK / WORLD_SIZE, else 0 of 1."""
    if rank is None or world_size is None:
        found = distributed_world() or (env_int("RANK", 0), env_int("WORLD_SIZE", 1))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise WvError(f"rank {rank} does not fit a world size of {world_size} (RANK, WORLD_SIZE)")
    return rank, world_size


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK), 0 without torchrun."""
    return env_int("LOCAL_RANK", 0)


def distributed_world() -> tuple[int, int] | None:
    import sys

    if "torch" not in sys.modules:  # nothing can have started a process group
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise WvError(f"the environment variable {name}={text!r} is not a whole number") from None


# -- device and threads --------------------------------------------------------------------------------------
def pick_device(device: str = "auto") -> torch.device:
    """The torch device for --device: auto (this rank's GPU when torch sees one, else the CPU), cpu, cuda,
    cuda:N or mps; anything else is refused in one sentence."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in DEVICE_TYPES:
        raise WvError(f"--device {device!r} is not a device wv can use; give auto, cpu, cuda, cuda:N or mps")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise WvError(f"--device {device} asked for, but torch sees no GPU here")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise WvError(f"--device {device} asked for, but torch sees only {torch.cuda.device_count()} GPU(s)")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise WvError(f"--device {device} asked for, but torch has no MPS backend here")
    return chosen


def set_threads(threads: int | None) -> None:
    """Limit this process's torch threads (None: leave the process's setting)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def one_thread(worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: decoding workers use one thread each; the processes are the parallelism."""
    set_threads(1)


# -- errors from workers -------------------------------------------------------------------------------------
def worker_error(error: BaseException) -> WvError | None:
    """The one-sentence WvError inside an error a worker sent back (a Ray task's RayTaskError, a
    DataLoader worker's re-raised WvError whose message carries the worker's traceback), else None."""
    cause = getattr(error, "cause", None)  # Ray: the exception the task raised
    if isinstance(cause, WvError):
        return WvError(str(cause))
    if isinstance(error, WvError):
        lines = str(error).strip().splitlines() or [""]
        return WvError(lines[-1].split("WvError: ", 1)[-1])
    return None


@contextmanager
def worker_errors() -> Iterator[None]:
    """Re-raise a WvError that comes back from a worker as one sentence, without the worker's traceback."""
    try:
        yield
    except Exception as error:
        unwrapped = worker_error(error)
        if unwrapped is None:
            raise
        raise unwrapped from None


def unwrap_errors(iterable: Iterable[T]) -> Iterator[T]:
    """Iterate, with worker_errors() around every step (for DataLoaders)."""
    with worker_errors():
        yield from iterable
