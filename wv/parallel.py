"""Map a function over per-shard (or per-query) jobs: in this process, a local process pool, or Ray.

Jobs are consumed lazily and at most `window` are in flight, so a 16,000-shard plan never sits in
memory as 16,000 pickled jobs. Results come back in completion order. A `Workers` pool is started
on first use and reused by every map of the same run (starting processes costs about a second).
"""

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterable, Iterator

from wv.errors import WvError

EXECUTORS = ("local", "ray")


class Workers:
    def __init__(self, workers: int = 1, executor: str = "local"):
        if executor not in EXECUTORS:
            raise WvError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
        if executor == "ray":
            raise WvError("--executor ray is not available in this version; use --executor local")
        if workers < 1:
            raise WvError("--workers must be at least 1")
        self.workers = workers
        self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def map(self, fn: Callable, jobs: Iterable, window: int | None = None) -> Iterator:
        if self.workers == 1:
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


def map_jobs(fn: Callable, jobs: Iterable, workers: int = 1, executor: str = "local", window: int | None = None) -> Iterator:
    """One-off map with its own pool."""
    with Workers(workers, executor) as pool:
        yield from pool.map(fn, jobs, window)
