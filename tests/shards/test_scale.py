"""The issue's bar: wv synth + wv shard build + wv shard verify on a 20-class set of 5,000+ images."""

import json
import subprocess
import sys


def wv(*args) -> dict:
    result = subprocess.run([sys.executable, "-m", "wv", *map(str, args), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_twenty_classes_five_thousand_images(tmp_path):
    synth = wv("synth", tmp_path / "wv", "--classes", "20", "--per-class", "250", "--val-per-class", "5", "--image-size", "64x48", "--workers", "2")
    assert synth["train"] == 5000
    built = wv("shard", "build", tmp_path / "wv", tmp_path / "root", "--workers", "2", "--shard-size", "500")
    assert built["written"] == 5000 and built["rejected"] == 0 and built["shards"] == 10
    assert wv("shard", "build", tmp_path / "wv", tmp_path / "root", "--split", "val", "--workers", "2")["written"] == 100
    checked = wv("shard", "verify", tmp_path / "root", "--workers", "2")
    assert checked["ok"] and checked["samples"] == 5100
