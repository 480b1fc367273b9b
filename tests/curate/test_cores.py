"""The pure cores of the scorers and of `wv select` (arrays and frames in and out) import nothing that
reads or writes a dataset root, runs a pool or shows progress: that is their drivers' work."""

import subprocess
import sys

import pytest

CORES = {
    "wv.curate.density_core": "wv.curate.density",
    "wv.curate.density_tiles": "wv.curate.density",
    "wv.curate.lda_model": "wv.curate.lda",
    "wv.curate.select_core": "wv.curate.select",
    "wv.curate.rules": "wv.curate.select",
    "wv.curate.noise_core": "wv.curate.noise",
    "wv.curate.probe_core": "wv.curate.probe",
    "wv.curate.duplicates_core": "wv.curate.duplicates",
}
DRIVER_MODULES = ("wv.shards", "wv.parallel", "wv.atomic", "wv.progress", "wv.runtime")


@pytest.mark.parametrize("core", CORES)
def test_a_core_imports_no_driver_module(core):
    check = f"import sys, {core}; print(sorted(m for m in sys.modules if m.startswith({DRIVER_MODULES!r}) or m == {CORES[core]!r}))"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
