"""wv.parallel pool workers end with the process that started them (SIGKILL of a build driver)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wv.errors import WvError
from wv.parallel import Workers

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys, threading, time
from wv.parallel import Workers

def run():
    with Workers(2) as pool:
        jobs = pool.map(time.sleep, [0.01, 0.01, 600, 600])
        next(jobs)  # the pool is up: both workers were started by the first window of jobs
        print(" ".join(str(pid) for pid in pool.pool._processes), flush=True)
        for _ in jobs:
            pass

if sys.argv[1] == "main":
    run()
else:  # a pool started from another thread: only the parent-pid watchdog can end its workers
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie nobody reaps has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_workers_exit_when_their_driver_is_killed(started_from):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, started_from], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        workers = [int(pid) for pid in driver.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the workers too, should the test fail
        except ProcessLookupError:
            pass


def test_bad_worker_options_are_one_sentence():
    with pytest.raises(WvError, match="--workers must be at least 1"):
        Workers(0)
    with pytest.raises(WvError, match="unknown executor 'dask'"):
        Workers(2, "dask")
