"""Map a function over per-shard (or per-query) jobs: in this process, a local process pool, or Ray.

Jobs are consumed lazily and at most `window` are in flight, so a 16,000-shard plan never sits in
memory as 16,000 pickled jobs. Results come back in completion order. A `Workers` pool is started
on first use and reused by every map of the same run (starting processes costs about a second).

With `executor="ray"` the same functions run as Ray tasks (one CPU each) on the cluster at
`ray_address` (or RAY_ADDRESS; none: a local Ray instance with `workers` CPUs). The tasks write
their outputs themselves, atomically, so ROOT must be on storage every Ray node can see.
"""

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator

from wv.errors import WvError
from wv.runtime import worker_errors

EXECUTORS = ("local", "ray")


class Workers:
    def __init__(self, workers: int = 1, executor: str = "local", ray_address: str | None = None):
        if executor not in EXECUTORS:
            raise WvError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
        if workers < 1:
            raise WvError("--workers must be at least 1")
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
            self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        yield from bounded_map(self.pool, fn, jobs, window or 2 * self.workers)


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


def require_ray():
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


def map_jobs(fn: Callable, jobs: Iterable, workers: int = 1, executor: str = "local", window: int | None = None,
             ray_address: str | None = None) -> Iterator:
    """One-off map with its own pool."""
    with Workers(workers, executor, ray_address) as pool:
        yield from pool.map(fn, jobs, window)
