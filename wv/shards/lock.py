"""One writer per dataset root: every command that writes under a root holds its lock while it runs.

The lock is an fcntl lock on ROOT/.build/lock (Root.lock_path); the kernel drops it when the holder
exits, however it ends, so a killed run never leaves a root locked. A second writer is refused in
one sentence naming the holder (its pid and command) rather than left waiting on a run that may
take hours. Within one process the lock is re-entrant (`wv demo` and tests call commands that call
others). Readers (stream, train, info, verify) take no lock.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from wv.errors import WvError
from wv.shards.root import Root

_held: dict[str, int] = {}  # lock file -> how many times this process holds it


@contextlib.contextmanager
def writing(root: str | Path | Root, command: str) -> Iterator[None]:
    """Hold ROOT's writer lock for `command` (e.g. "score lda"); refuse if another process holds it.

    Take it only once the root is known to be one (or is a new folder the command creates), so a
    refused command on a wrong path writes nothing."""
    root = root if isinstance(root, Root) else Root(root)
    path = root.lock_path
    key = str(path.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise WvError(f"another wv command is writing to {root.path}{f' ({holder})' if holder else ''}; wait for it to finish, then run this one again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: wv {command}".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
