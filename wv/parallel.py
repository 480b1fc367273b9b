"""Map a function over per-shard (or per-query) jobs: in this process, a local process pool, or Ray.

Jobs are consumed lazily and at most `window` are in flight, so a 16,000-shard plan never sits in
memory as 16,000 pickled jobs. Results come back in completion order. A `Workers` pool is started
on first use and reused by every map of the same run (starting processes costs about a second).

With `executor="ray"` the same functions run as Ray tasks (one CPU each) on the cluster at
`ray_address` (or RAY_ADDRESS; none: a local Ray instance with `workers` CPUs). The tasks write
their outputs themselves, atomically, so ROOT must be on storage every Ray node can see.

Local pool workers end when the process that started them dies (a SIGKILLed driver leaves no
workers behind): see `die_with_parent`.
"""

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator

from wv.errors import WvError
from wv.runtime import check_processes, worker_errors

EXECUTORS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 0.5


def check_workers(workers: int, executor: str = "local") -> None:
    """The one-sentence refusals of Workers(), for commands that check every option before writing."""
    if executor not in EXECUTORS:
        raise WvError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise WvError("--workers must be at least 1")
    if executor == "local":
        check_processes(workers, "--workers", least=1)


class Workers:
    def __init__(self, workers: int = 1, executor: str = "local", ray_address: str | None = None):
        check_workers(workers, executor)
        self.workers, self.executor, self.ray_address = workers, executor, ray_address
        self.pool = None
        self.ray, self.started_ray = start_ray(workers, ray_address) if executor == "ray" else (None, False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if self.started_ray:
            self.ray.shutdown()

    @property
    def inline(self) -> bool:
        """True when map runs the jobs in this process, one after another."""
        return self.ray is None and self.workers == 1

    def cluster_cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", self.workers)))

    def map(self, fn: Callable, jobs: Iterable, window: int | None = None) -> Iterator:
        if self.ray is not None:
            yield from ray_map(self.ray, fn, jobs, window or 2 * self.cluster_cpus())
            return
        if self.inline:
            yield from map(fn, jobs)
            return
        if self.pool is None:
            # spawn, not fork: workers must not inherit the parent's locks, threads (torch) or files.
            context = multiprocessing.get_context("spawn")
            on_main_thread = threading.current_thread() is threading.main_thread()
            self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(), on_main_thread))
        yield from bounded_map(self.pool, fn, jobs, window or 2 * self.workers)


def die_with_parent(parent: int, use_pdeathsig: bool = True) -> None:
    """Pool initializer: make this worker exit when `parent` (the process that started it) dies.

    On Linux the kernel sends SIGKILL at once (prctl PR_SET_PDEATHSIG). That signal follows the
    parent *thread*, so it is asked for only when the pool was started from the main thread. A
    daemon thread that polls the parent pid is the fallback everywhere (and covers a parent that
    died before prctl took effect).
    """
    if use_pdeathsig and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch_parent, args=(parent,), name="wv-watch-parent", daemon=True).start()


def watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def bounded_map(pool, fn: Callable, jobs: Iterable, window: int) -> Iterator:
    pending = set()
    try:
        for job in jobs:
            pending.add(pool.submit(fn, job))
            if len(pending) >= window:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                yield from (f.result() for f in done)
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            yield from (f.result() for f in done)
    finally:
        for future in pending:
            future.cancel()


def require_ray() -> types.ModuleType:
    """The ray module, or a one-sentence WvError when it is not installed."""
    try:
        import ray
    except ImportError:
        raise WvError("--executor ray needs Ray: pip install 'wv[ray]' (or pip install ray)") from None
    return ray


def start_ray(workers: int, address: str | None):
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS")
    options = {"address": address} if address else {"num_cpus": workers}
    try:
        ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as error:
        raise WvError(f"cannot reach the Ray cluster at {address}: {error}") from None
    return ray, True


def ray_map(ray, fn: Callable, jobs: Iterable, window: int) -> Iterator:
    task = ray.remote(num_cpus=1, max_retries=2)(fn)
    pending = []
    try:
        for job in jobs:
            pending.append(task.remote(job))
            if len(pending) >= window:
                done, pending = ray.wait(pending, num_returns=1)
                yield from ray_results(ray, done)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray_results(ray, done)
    finally:
        for ref in pending:
            ray.cancel(ref)


def ray_results(ray, refs) -> list:
    """ray.get, except that a WvError raised in a task comes back as itself (one sentence), not wrapped
    in Ray's RayTaskError with the remote traceback, as the local pool gives it."""
    with worker_errors():
        return ray.get(refs)


def map_jobs(fn: Callable, jobs: Iterable, workers: int = 1, executor: str = "local", window: int | None = None, ray_address: str | None = None) -> Iterator:
    """One-off map with its own pool."""
    with Workers(workers, executor, ray_address) as pool:
        yield from pool.map(fn, jobs, window)
