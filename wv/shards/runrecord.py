"""The run record: which command wrote a folder and with which options, so a re-run resumes.

Every command that writes resumable output keeps its options beside it: sidecar folders in
`_run.json` ({"command": ..., **options}), models in their own info file, a bake in OUT's wv.json, an
audit in report.json. A re-run with the same options resumes; with other options it is refused in
one sentence naming the options that changed (`changed` / `refuse_changed`, the one comparison).
A folder made by another command is never replaced, not even with --overwrite. The record is
written only once the run has passed its checks (`RunRecord.start`), so a run refused on bad input
never ties the folder to options that were not used.
"""

import json
import shutil
from pathlib import Path

from wv.atomic import write_json
from wv.errors import WvError

RUN_FILE = "_run.json"


def as_json(options: dict) -> dict:
    """Options as they read back from JSON (tuples become lists ...)."""
    return json.loads(json.dumps(options))


def changed(previous: dict, options: dict) -> list[str]:
    """The option names whose values differ between two runs."""
    options = as_json(options)
    return sorted(k for k in set(previous) | set(options) if previous.get(k) != options.get(k))


def refuse_changed(what: str, previous: dict, options: dict, remedy: str = "pass --overwrite to replace it, or choose another --name") -> None:
    """Raise the one refusal when `options` differ from those `what` was made with."""
    names = changed(previous, options)
    if names:
        raise WvError(f"{what} was made with other options ({', '.join(names)}); {remedy}")


def read_json(path: Path, what: str) -> dict | None:
    """A JSON object file, None when absent; damaged -> one sentence."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise WvError(f"{path} is damaged (not a JSON object); remove {what} or pass --overwrite")
    return value


class RunRecord:
    """FOLDER/_run.json of one command's output folder (e.g. ROOT/scores/NAME)."""

    def __init__(self, folder, command: str, what: str | None = None):
        self.folder = Path(folder)
        self.command = command
        self.what = what or str(self.folder)

    @property
    def path(self) -> Path:
        return self.folder / RUN_FILE

    def read(self) -> dict | None:
        return read_json(self.path, self.what)

    def options(self) -> dict | None:
        record = self.read()
        return None if record is None else {k: v for k, v in record.items() if k != "command"}

    def check(self, options: dict, overwrite: bool = False) -> None:
        """Refuse (writing nothing) if the folder is another command's, or was made with other options
        and `overwrite` is not set."""
        self.check_owner()
        if not overwrite and self.read() is not None:
            refuse_changed(self.what, self.options(), options)

    def check_owner(self) -> None:
        """Refuse if another command made the folder (a record without a command is taken as ours)."""
        record = self.read()
        if record is not None and record.get("command", self.command) != self.command:
            raise WvError(f"{self.what} was made by `wv {record['command']}`, not `wv {self.command}`; choose another --name (--overwrite never replaces another command's output)")

    def start(self, options: dict, overwrite: bool = False) -> None:
        """Check, then (with `overwrite`) empty the folder, and record the options: the run may write."""
        self.check(options, overwrite)
        if overwrite and self.folder.is_dir():
            shutil.rmtree(self.folder)
        write_json(self.path, {"command": self.command, **options})
