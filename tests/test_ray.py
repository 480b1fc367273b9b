"""--executor ray: the same per-shard tasks as the local pool, on a local two-CPU Ray instance."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wv.shards.build import BuildOptions, build
from wv.shards.root import Root

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'wv[ray]'); CI installs it")


def test_ray_build_is_byte_identical_to_the_local_pool(built_root, synth_v1, tmp_path):
    build(synth_v1, tmp_path / "root", BuildOptions(split="train", shard_size=40), workers=2, executor="ray", progress=False)
    local = Root(built_root).shards("train").select("name", "sha256")
    assert Root(tmp_path / "root").shards("train").select("name", "sha256").equals(local)
    manifest = Root(tmp_path / "root").manifest("train").collect()
    assert manifest.equals(Root(built_root).manifest("train").collect())


def test_killed_ray_build_resumes_without_redoing_complete_shards(tmp_path):
    from wv.synth import SynthOptions, write_synth

    write_synth(tmp_path / "wv", SynthOptions(classes=8, per_class=200, val_per_class=0, seed=4), workers=2)
    root = tmp_path / "root"
    command = [sys.executable, "-m", "wv", "shard", "build", str(tmp_path / "wv"), str(root), "--shard-size", "8",
               "--workers", "2", "--executor", "ray"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = root / ".build" / "train" / "parts"
    deadline = time.time() + 120
    while len(list(parts.glob("*.done.json"))) < 10 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = {p.name.split(".")[0]: (root / "shards" / f"{p.name.split('.')[0]}.tar").stat().st_mtime_ns
             for p in parts.glob("*.done.json")}
    assert 10 <= len(first) < 200, "the build should be killed midway"
    rerun = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    figures = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert figures["written"] == 1600 and figures["shards_skipped"] >= len(first)
    assert all((root / "shards" / f"{name}.tar").stat().st_mtime_ns == mtime for name, mtime in first.items())
    build(tmp_path / "wv", tmp_path / "local", BuildOptions(shard_size=8), workers=1, progress=False)
    assert Root(root).shards().select("name", "sha256").equals(Root(tmp_path / "local").shards().select("name", "sha256"))
