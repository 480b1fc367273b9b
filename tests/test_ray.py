"""--executor ray: the same per-shard tasks as the local pool, on one local two-CPU Ray instance shared by
this module's tests (Ray starts slowly): byte-identical shards, identical scores and selection, a killed
build that resumes, a task's WvError as one sentence; and without Ray, one sentence and exit 2."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wv.shards.build import BuildOptions, build
from wv.shards.root import Root

# every command that maps its work over shards with wv.parallel (the worker_options decorator)
RAY_COMMANDS = [
    ("shard", "build", "{synth}", "{tmp}/built"),
    ("shard", "verify", "{root}"),
    ("shard", "bake", "{root}", "{tmp}/baked"),
    ("score", "lda", "{root}"),
    ("score", "keywords", "{root}"),
    ("select", "{root}", "--drop", "meta.label == 0"),
    ("audit", "{root}"),
    ("score", "density", "{root}"),
]


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'wv[ray]'); CI installs it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_build_is_byte_identical_to_the_local_pool(ray_address, built_root, synth_v1, tmp_path):
    build(synth_v1, tmp_path / "root", BuildOptions(split="train", shard_size=40), workers=2, executor="ray", progress=False)
    local = Root(built_root).shards("train").select("name", "sha256")
    assert Root(tmp_path / "root").shards("train").select("name", "sha256").equals(local)
    manifest = Root(tmp_path / "root").manifest("train").collect()
    assert manifest.equals(Root(built_root).manifest("train").collect())


def test_ray_scores_and_selection_are_byte_identical_to_the_local_pool(ray_address, built_root, tmp_path):
    from wv.curate import keywords as kw
    from wv.curate import lda
    from wv.curate.select import select

    roots = {executor: Path(shutil.copytree(built_root, tmp_path / executor)) for executor in ("local", "ray")}
    rules = ["lda.similarity < 0.3", "keywords.count == 0"]
    for executor, root in roots.items():
        lda.score_lda(root, lda.LdaOptions(topics=20, passes=5, no_below=3), workers=2, executor=executor, progress=False)
        kw.score_keywords(root, kw.KeywordOptions(min_docs=3, max_doc_share=0.2), workers=2, executor=executor, progress=False)
        select(root, rules, workers=2, executor=executor, progress=False)
    local, ray = (Root(roots[e]) for e in ("local", "ray"))
    shards = local.shard_names("train")
    for name in (lda.NAME, lda.LABEL_WEIGHTS, kw.NAME, "selection"):
        for shard in shards:
            assert ray.score_path(name, shard).read_bytes() == local.score_path(name, shard).read_bytes(), (name, shard)
    for shard in shards:
        assert ray.features_path(lda.NAME, shard).read_bytes() == local.features_path(lda.NAME, shard).read_bytes()
    assert lda.open_model(ray.model_dir(lda.NAME)).model_id == lda.open_model(local.model_dir(lda.NAME)).model_id
    summaries = [json.loads((r.path / "scores" / "selection" / "_summary.json").read_text()) for r in (ray, local)]
    for summary in summaries:
        summary.pop("paths")
    assert summaries[0]["dropped"] > 0 and summaries[0] == summaries[1]


def test_ray_density_matches_the_local_pool(ray_address, root_copy, tmp_path):
    import numpy as np
    import polars as pl

    from wv.curate.density import DensityOptions, score_density
    from wv.shards import sidecars

    root = Root(root_copy)
    rng = np.random.default_rng(0)
    for shard in root.shard_names("train"):
        labels = pl.read_parquet(root.meta_path(shard), columns=["label"])["label"].to_numpy()
        sidecars.write_features(root, "random", shard, (rng.normal(size=(labels.size, 8)) + labels[:, None]).astype(np.float16))
    local = Path(shutil.copytree(root_copy, tmp_path / "local"))
    score_density(local, DensityOptions(), workers=2, progress=False)
    figures = score_density(root_copy, DensityOptions(), workers=2, executor="ray", ray_address=ray_address, progress=False)
    assert figures["classes_done"] == 6 and figures["device"] == "cpu"
    ray, here = (sidecars.read_scores(Root(r), "density", split="train").collect() for r in (root_copy, local))
    assert ray.drop("delta").equals(here.drop("delta"))
    np.testing.assert_allclose(ray["delta"].to_numpy(), here["delta"].to_numpy(), rtol=1e-4)


def test_a_wv_error_in_a_ray_task_is_one_sentence(ray_address, root_copy, wv_cli):
    import polars as pl

    root = Root(root_copy)
    shard = root.shard_names("train")[1]
    for name in root.shard_names("train"):  # a made-up score, with one shard's rows out of order
        frame = pl.read_parquet(root.meta_path(name), columns=["__key__"]).with_columns(pl.lit(1.0).alias("value"))
        root.score_path("made_up", name).parent.mkdir(parents=True, exist_ok=True)
        (frame.reverse() if name == shard else frame).write_parquet(root.score_path("made_up", name))
    result = wv_cli("select", root_copy, "--drop", "made_up.value < 0.5", "--workers", "2", "--executor", "ray", "--ray-address", ray_address)
    assert result.exit_code == 2 and "Traceback" not in result.stderr and "RayTaskError" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # above it: progress bars, unless TQDM_DISABLE=1
    assert last == (f"Error: {root.score_path('made_up', shard)} does not match the samples of shard {shard} (its rows in another order); re-run the command that made it with --overwrite")


def test_killed_ray_build_resumes_without_redoing_complete_shards(ray_address, tmp_path):
    from wv.synth import SynthOptions, write_synth

    write_synth(tmp_path / "wv", SynthOptions(classes=8, per_class=200, val_per_class=0, seed=4), workers=2)
    root = tmp_path / "root"
    command = [sys.executable, "-m", "wv", "shard", "build", str(tmp_path / "wv"), str(root), "--shard-size", "8", "--workers", "2", "--executor", "ray", "--ray-address", ray_address]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = root / ".build" / "train" / "parts"
    deadline = time.time() + 120
    while len(list(parts.glob("*.done.json"))) < 10 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = {p.name.split(".")[0]: (root / "shards" / f"{p.name.split('.')[0]}.tar").stat().st_mtime_ns for p in parts.glob("*.done.json")}
    assert 10 <= len(first) < 200, "the build should be killed midway"
    rerun = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    figures = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert figures["written"] == 1600 and figures["shards_skipped"] >= len(first)
    assert all((root / "shards" / f"{name}.tar").stat().st_mtime_ns == mtime for name, mtime in first.items())
    build(tmp_path / "wv", tmp_path / "local", BuildOptions(shard_size=8), workers=1, progress=False)
    assert Root(root).shards().select("name", "sha256").equals(Root(tmp_path / "local").shards().select("name", "sha256"))


def test_without_ray_every_ray_command_is_one_sentence_and_exit_2(root_copy, synth_v1, tmp_path, wv_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where Ray is not installed
    before = sorted(p.relative_to(root_copy) for p in root_copy.rglob("*"))
    for args in RAY_COMMANDS:
        args = [a.format(synth=synth_v1, root=root_copy, tmp=tmp_path) for a in args]
        result = wv_cli(*args, "--executor", "ray")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr == "Error: --executor ray needs Ray: pip install 'wv[ray]' (or pip install ray)\n", args
    # refused before writing anything
    assert not (tmp_path / "built").exists() and not (tmp_path / "baked").exists()
    assert sorted(p.relative_to(root_copy) for p in root_copy.rglob("*")) == before
