"""Map a function over per-shard (or per-query) jobs: in this process, a local process pool, or Ray.

Jobs are consumed lazily and at most `window` are in flight, so a 16,000-shard plan never sits in
memory as 16,000 pickled jobs. Results come back in completion order.
"""

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterable, Iterator

from wv.errors import WvError

EXECUTORS = ("local", "ray")


def map_jobs(fn: Callable, jobs: Iterable, workers: int = 1, executor: str = "local", window: int | None = None) -> Iterator:
    if executor not in EXECUTORS:
        raise WvError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        raise WvError("--executor ray is not available in this version; use --executor local")
    if workers <= 1:
        yield from map(fn, jobs)
        return
    yield from map_pool(fn, jobs, workers, window or 2 * workers)


def map_pool(fn: Callable, jobs: Iterable, workers: int, window: int) -> Iterator:
    # spawn, not fork: workers must not inherit the parent's locks, threads (torch) or open files.
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = set()
        jobs = iter(jobs)
        try:
            for job in jobs:
                pending.add(pool.submit(fn, job))
                if len(pending) >= window:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            for future in cf.as_completed(pending):
                yield future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
