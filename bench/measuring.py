"""What the benchmarks measure with: CPU time, peak memory, a function run in a fresh process.

Imported by the bench/*.py scripts (run as `python bench/NAME.py`, so this folder is on sys.path).
"""

import multiprocessing
import os
import resource
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process and of its children: finished ones (worker pools once shut down, tar) and,
    on Linux, running ones (persistent loader workers), read from /proc."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + running_children_seconds()


def running_children_seconds() -> float:
    """CPU time so far of this process's running children (0 where /proc does not list them)."""
    pid, total = os.getpid(), 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    for child in children:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it has just ended: getrusage counts it from now on
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)
    return total


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: that one keeps the parent's peak across exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mb() -> float:
    """This process's resident memory now (Linux), e.g. after its imports, to subtract from the peak."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def in_child(target, *args) -> dict:
    """Run target(*args, queue) in a fresh spawned process (its own peak memory) and return what it put on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    child.join()
    return queue.get() if not queue.empty() else {"error": f"failed ({child.exitcode})"}
