"""Shared fixtures: small synthetic WebVision sets and dataset roots built from them.

Session-scoped roots are shared: treat them as read-only, or take `root_copy` to modify one.
"""

import functools
import json
import shutil
from pathlib import Path

import pytest
import tqdm
from click.testing import CliRunner

from wv.cli import main
from wv.shards.build import BuildOptions, build
from wv.synth import SynthOptions, write_synth

REAL_DATA = Path(__file__).parent / "data"
pytest_plugins = ["stream_roots"]  # the sampler's roots: tests/stream and tests/train both use them


@pytest.fixture(scope="session")
def synth_v1(tmp_path_factory) -> Path:
    """WebVision 1.0 layout: 6 classes, 30% noise, planted defects (see defects.json)."""
    out = tmp_path_factory.mktemp("synth") / "v1"
    write_synth(out, SynthOptions(classes=6, per_class=40, noise=0.3, imbalance=2.0, val_per_class=4, defects=True, seed=0))
    return out


@pytest.fixture(scope="session")
def built_root(tmp_path_factory, synth_v1) -> Path:
    """A dataset root with train (shards of 40) and val built from synth_v1. Read-only."""
    root = tmp_path_factory.mktemp("roots") / "v1"
    build(synth_v1, root, BuildOptions(split="train", shard_size=40), workers=1, progress=False)
    build(synth_v1, root, BuildOptions(split="val", shard_size=40), workers=1, progress=False)
    return root


@pytest.fixture
def root_copy(built_root, tmp_path) -> Path:
    """A private, modifiable copy of built_root."""
    return Path(shutil.copytree(built_root, tmp_path / "root"))


@pytest.fixture
def wv_cli():
    """Run `wv ARGS...` in-process: returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def last_json():
    """Parse the --json object a command prints on its last stdout line."""
    return lambda stdout: json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def quiet_bars(monkeypatch):
    """No progress bars on the captured stderr (TQDM_DISABLE is read when tqdm is imported)."""
    original = tqdm.std.tqdm.__init__

    @functools.wraps(original)
    def quiet_init(self, *args, **kwargs):
        kwargs.setdefault("disable", True)
        original(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", quiet_init)
