"""Bad input through the CLI: every case exits 2 with one line on stderr and changes nothing.

Each row of CASES is (id, damage, command): `damage` names a way to damage a copy of the root (None:
the shared, intact root), and the command's words may name {root}, {src} (the WebVision-layout
source, a folder that is not a root), {ckpt} (a checkpoint), {file} (a plain file), {out} (a folder
that does not exist yet) and {away} (a report folder outside the root and the working folder, for
damage that only the report's second pass can find). For each case the tree of the root and of the
working folder (paths, sizes, sha256) is the same before and after.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from wv.cli import main
from wv.curate.curriculum import curriculum_split
from wv.curate.lda import LdaOptions, score_lda
from wv.curate.options import CurriculumOptions
from wv.curate.select import select
from wv.shards.root import Root
from wv.stream.config import SamplerConfig
from wv.train.trainer import TrainOptions, train

TINY = ("--arch", "tinycnn", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0")
TRAIN = ("train", "--shards", "{root}", *TINY, "--out", "{out}")
EVAL = ("eval", "--shards", "{root}", "--checkpoint", "{ckpt}", "--out", "{out}")
AUDIT = ("audit", "{root}", "--out", "{out}")
PRETRAIN = ("pretrain", "--shards", "{root}", *TINY, "--out", "{out}")
LDA = ("score", "lda", "{root}", "--topics", "4", "--passes", "2", "--no-below", "1", "--overwrite")  # the root's lda options
HUGE = str(2**63)

CASES = [
    # seeds out of 0 .. 2**63 - 1
    ("stream-seed-negative", None, ("stream", "{root}", "--seed", "-1")),
    ("stream-seed-huge", None, ("stream", "{root}", "--seed", HUGE)),
    ("train-seed-negative", None, (*TRAIN, "--seed", "-1")),
    ("train-seed-huge", None, (*TRAIN, "--seed", HUGE)),
    ("lda-seed-negative", None, (*LDA, "--seed", "-1")),
    ("lda-seed-huge", None, (*LDA, "--seed", HUGE)),
    ("curriculum-seed-negative", None, ("curriculum", "split", "{root}", "--by", "lda:similarity", "--name", "c2", "--seed", "-1")),
    ("curriculum-seed-huge", None, ("curriculum", "split", "{root}", "--by", "lda:similarity", "--name", "c2", "--seed", HUGE)),
    # wv score noise and labelissues: unknown features, options out of range (the root has only LDA topic features)
    ("noise-features-unknown", None, ("score", "noise", "{root}", "--features", "nosuch")),
    ("noise-threshold-one", None, ("score", "noise", "{root}", "--threshold", "1")),
    ("noise-folds-one", None, ("score", "noise", "{root}", "--features", "lda", "--folds", "1")),
    ("noise-name-is-probe", None, ("score", "noise", "{root}", "--name", "probe")),
    ("labelissues-no-image-features", None, ("score", "labelissues", "{root}")),
    ("labelissues-features-unknown", None, ("score", "labelissues", "{root}", "--features", "nosuch")),
    # a device torch does not know
    ("train-device", None, (*TRAIN, "--device", "tpu9")),
    ("eval-device", None, (*EVAL, "--device", "tpu9")),
    ("embed-device", None, ("embed", "{root}", "--model", "{ckpt}", "--device", "tpu9")),
    ("confidence-device", None, ("score", "confidence", "{root}", "--model", "{ckpt}", "--device", "tpu9")),
    ("density-device", None, ("score", "density", "{root}", "--features", "lda", "--workers", "1", "--device", "tpu9")),
    # sizes and counts
    ("train-image-size-negative", None, (*TRAIN, "--image-size", "-32")),
    ("train-image-size-one", None, (*TRAIN, "--image-size", "1")),
    ("train-width-negative", None, (*TRAIN, "--width", "-3")),
    ("eval-batch-size-zero", None, (*EVAL, "--batch-size", "0")),
    ("eval-batch-size-negative", None, (*EVAL, "--batch-size", "-1")),
    ("eval-workers-negative", None, (*EVAL, "--workers", "-1")),
    ("audit-bins-zero", None, (*AUDIT, "--bins", "0")),
    ("audit-per-class-huge", None, (*AUDIT, "--per-class", str(2**64))),
    ("stream-shuffle-window-huge", None, ("stream", "{root}", "--shuffle-window", str(2**64))),
    ("audit-bins-negative", None, (*AUDIT, "--bins", "-1")),
    ("audit-selection-not-a-selection", None, (*AUDIT, "--selection", "lda")),
    ("audit-a-file", None, ("audit", "{root}/wv.json")),
    # --out a file, a source folder where a root belongs
    ("train-out-file", None, ("train", "--shards", "{root}", *TINY, "--out", "{file}")),
    ("eval-out-file", None, ("eval", "--shards", "{root}", "--checkpoint", "{ckpt}", "--out", "{file}")),
    ("audit-out-file", None, ("audit", "{root}", "--out", "{file}")),
    ("train-out-root", None, ("train", "--shards", "{root}", *TINY, "--out", "{root}")),
    ("train-val-source", None, (*TRAIN, "--val", "{src}")),
    ("eval-shards-source", None, ("eval", "--shards", "{src}", "--checkpoint", "{ckpt}", "--out", "{out}")),
    # accepted but wrong
    ("train-backprop-gate-negative", None, (*TRAIN, "--backprop-gate", "-0.5")),
    ("stream-subset-weights-too-many", None, ("stream", "{root}", "--subset-weights", "1,1,1,1,1,1")),
    ("train-subset-weights-too-many", None, (*TRAIN, "--subset-weights", "1,1,1,1,1,1")),
    ("stream-curriculum-subset-beyond", None, ("stream", "{root}", "--curriculum", "0:0;1:0,3")),
    ("train-curriculum-subset-beyond", None, (*TRAIN, "--curriculum", "0:0,1,2,3")),
    ("train-lr-nan", None, (*TRAIN, "--lr", "nan")),
    ("train-lr-inf", None, (*TRAIN, "--lr", "inf")),
    ("train-lr-zero", None, (*TRAIN, "--lr", "0")),
    ("train-lr-negative", None, (*TRAIN, "--lr", "-0.1")),
    ("train-weight-decay-nan", None, (*TRAIN, "--weight-decay", "nan")),
    ("train-head-lr-mult-negative", None, (*TRAIN, "--head-lr-mult", "-1")),
    ("train-warmup-steps-negative", None, (*TRAIN, "--warmup-steps", "-5")),
    ("train-freeze-body-negative", None, (*TRAIN, "--freeze-body-epochs", "-1")),
    ("train-lr-schedule-unknown", None, (*TRAIN, "--lr-schedule", "linear")),
    ("train-arch-unknown", None, (*TRAIN, "--arch", "seresnet5O")),
    ("train-arch-image-too-small", None, (*TRAIN, "--arch", "inception_v3")),
    # --init: a missing file, a file that is not weights, weights of another architecture, with --resume
    ("train-init-missing", None, (*TRAIN, "--init", "{out}/nothing.pt")),
    ("train-init-not-weights", None, (*TRAIN, "--init", "{file}")),
    ("train-init-other-arch", None, (*TRAIN, "--arch", "resnet18", "--init", "{ckpt}")),
    ("train-init-with-resume", None, (*TRAIN, "--init", "{ckpt}", "--resume")),
    # click's own refusals (a choice, a type, a missing argument, a command), in one line too
    ("build-split-unknown", None, ("shard", "build", "{src}", "{out}", "--split", "test")),
    ("train-epochs-not-a-number", None, (*TRAIN, "--epochs", "many")),
    ("select-no-root", None, ("select",)),
    ("duplicates-threshold-zero", None, ("score", "duplicates", "{root}", "--features", "lda", "--threshold", "0")),
    ("duplicates-threshold-above-one", None, ("score", "duplicates", "{root}", "--features", "lda", "--threshold", "1.5")),
    ("duplicates-threshold-nan", None, ("score", "duplicates", "{root}", "--features", "lda", "--threshold", "nan")),
    ("duplicates-features-missing", None, ("score", "duplicates", "{root}", "--features", "nope")),
    ("duplicates-val-features-missing", None, ("score", "duplicates", "{root}", "--features", "lda")),
    ("duplicates-against-not-features", None, ("score", "duplicates", "{root}", "--features", "lda", "--against", "{file}")),
    ("no-such-command", None, ("shard", "rebuild", "{root}")),
    # pseudo-labels and ensembles
    ("relabel-no-model", None, ("relabel", "{root}")),
    ("relabel-min-confidence-zero", None, ("relabel", "{root}", "--model", "{ckpt}", "--min-confidence", "0")),
    ("relabel-min-confidence-above-one", None, ("relabel", "{root}", "--model", "{ckpt}", "--min-confidence", "1.5")),
    ("relabel-min-confidence-nan", None, ("relabel", "{root}", "--model", "{ckpt}", "--min-confidence", "nan")),
    ("relabel-name-path", None, ("relabel", "{root}", "--model", "{ckpt}", "--name", "../up")),
    ("relabel-model-not-a-checkpoint", None, ("relabel", "{root}", "--model", "{file}")),
    ("relabel-seed-negative", None, ("relabel", "{root}", "--model", "{ckpt}", "--seed", "-1")),
    ("stream-labels-not-classes", None, ("stream", "{root}", "--labels", "lda.similarity")),
    ("train-labels-not-classes", None, (*TRAIN, "--labels", "lda.similarity")),
    ("train-labels-no-column", None, (*TRAIN, "--labels", "selection")),
    ("eval-ensemble-not-a-checkpoint", None, (*EVAL, "--checkpoint", "{file}")),
    ("confidence-ensemble-with-clip", None, ("score", "confidence", "{root}", "--model", "{ckpt}", "--model", "ViT-B-32")),
    # process counts that would start processes until the machine runs out of memory
    ("eval-workers-huge", None, (*EVAL, "--workers", "100000")),
    ("train-epochs-huge", None, (*TRAIN, "--epochs", "18446744073709551616")),
    ("synth-per-class-huge", None, ("synth", "{out}", "--per-class", "18446744073709551616")),
    ("lda-passes-huge", None, ("score", "lda", "{root}", "--passes", "18446744073709551616")),
    ("train-workers-huge", None, (*TRAIN, "--workers", "100000")),
    ("embed-loader-workers-huge", None, ("embed", "{root}", "--model", "{ckpt}", "--loader-workers", "100000")),
    ("density-workers-huge", None, ("score", "density", "{root}", "--features", "lda", "--workers", "100000")),
    # a damaged root
    *[
        (f"{'-'.join(command[: 2 if command[0] == 'shard' else 1])}-{damage}", damage, command)
        for damage in ("info-garbage", "info-list", "info-classes-number", "info-class-shape")
        for command in (("shard", "verify", "{root}"), ("shard", "info", "{root}"), ("stream", "{root}"), TRAIN, AUDIT)
    ],
    ("shard-info-manifest-garbage", "manifest-garbage", ("shard", "info", "{root}")),
    ("shard-verify-manifest-garbage", "manifest-garbage", ("shard", "verify", "{root}")),
    ("shard-info-shards-table-garbage", "shards-table-garbage", ("shard", "info", "{root}")),
    ("stream-shards-table-garbage", "shards-table-garbage", ("stream", "{root}")),
    ("stream-manifest-garbage", "manifest-garbage", ("stream", "{root}")),
    ("train-manifest-garbage", "manifest-garbage", TRAIN),
    ("audit-manifest-garbage", "manifest-garbage", ("audit", "{root}", "--out", "{away}")),
    ("stream-score-garbage", "score-garbage", ("stream", "{root}", "--weight-column", "lda.similarity")),
    ("train-score-garbage", "score-garbage", (*TRAIN, "--soft-label", "lda.similarity")),
    ("audit-score-garbage", "score-garbage", AUDIT),
    ("audit-meta-deleted", "meta-deleted", AUDIT),
    ("audit-score-deleted", "score-deleted", AUDIT),
    ("audit-shard-truncated", "shard-truncated", ("audit", "{root}", "--per-class", "1000", "--kept-per-class", "1000", "--out", "{away}")),
    ("train-shard-truncated", "shard-truncated", TRAIN),
    ("audit-offset-wrong", "offset-wrong", ("audit", "{root}", "--per-class", "1000", "--kept-per-class", "1000", "--out", "{away}")),
    ("train-offset-wrong", "offset-wrong", TRAIN),
    ("train-image-header-broken", "image-header", TRAIN),
    ("train-label-out-of-range", "label-9999", TRAIN),
    ("train-topic-features-garbage", "features-garbage", (*TRAIN, "--topic-head", "lda")),
    ("train-topic-features-shape", "features-shape", (*TRAIN, "--topic-head", "lda")),
    # wv pretrain: a task without its scores, bad task options, a damaged label_weights sidecar
    ("pretrain-keywords-unscored", None, (*PRETRAIN, "--task", "keywords")),
    ("pretrain-keywords-source", None, ("pretrain", "--task", "keywords", "--shards", "{src}", *TINY, "--out", "{out}")),
    ("pretrain-holdout", None, (*PRETRAIN, "--task", "keywords", "--holdout", "1")),
    ("pretrain-permutations", None, (*PRETRAIN, "--task", "permutation", "--grid", "2", "--permutations", "25")),
    ("pretrain-grid", None, (*PRETRAIN, "--task", "permutation", "--grid", "1")),
    ("pretrain-tiles-too-small", None, (*PRETRAIN, "--task", "permutation", "--grid", "3")),
    ("pretrain-label-weights-garbage", "label-weights-garbage", (*PRETRAIN, "--task", "label-weights")),
]

# Cases whose refusal must be the option check itself (not a later failure of the run it would start).
NAMES = {
    "train-lr-nan": "--lr must",
    "train-lr-inf": "--lr must",
    "train-lr-zero": "--lr must",
    "train-lr-negative": "--lr must",
    "train-weight-decay-nan": "--weight-decay must",
    "train-head-lr-mult-negative": "--head-lr-mult must",
    "train-init-other-arch": "no tensor of it fits",
    "train-arch-image-too-small": "cannot take 32-pixel images",
    "train-init-with-resume": "--init starts a new run",
    "lda-seed-negative": "--seed",
    "lda-seed-huge": "--seed",
    "train-topic-features-shape": "not topic rows",
    "train-shard-truncated": "shorter than the manifest",
    "pretrain-keywords-unscored": "wv score keywords",
    "pretrain-holdout": "--holdout must",
    "pretrain-permutations": "24 orders",
    "pretrain-grid": "--grid must",
    "pretrain-tiles-too-small": "tiles of 10 pixels",
    "pretrain-label-weights-garbage": "re-run",
    "relabel-min-confidence-zero": "--min-confidence must",
    "relabel-min-confidence-nan": "--min-confidence must",
    "train-labels-not-classes": "must hold class numbers",
    "stream-labels-not-classes": "must hold class numbers",
    "eval-workers-huge": "between 0 and 1,024",
    "train-workers-huge": "between 0 and 1,024",
    "embed-loader-workers-huge": "between 0 and 1,024",
    "density-workers-huge": "between 1 and 1,024",
    "lda-passes-huge": "--passes must be at most",
    "synth-per-class-huge": "--per-class must be 1 to 1,000,000",
    "train-epochs-huge": "--epochs must be at most",
}


# -- the roots -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_root(built_root, tmp_path_factory) -> dict:
    """built_root with lda scores and features, a selection, curriculum subsets, and a checkpoint beside it."""
    base = tmp_path_factory.mktemp("bad-input")
    root = Path(shutil.copytree(built_root, base / "root"))
    score_lda(root, LdaOptions(topics=4, passes=2, no_below=1), progress=False)
    select(root, ["lda.similarity < 0.2"], min_per_class=0, max_drop_fraction=1.0, progress=False)
    curriculum_split(root, CurriculumOptions(by="lda:similarity", subsets=3), progress=False)
    run = base / "run"
    train(root, TrainOptions(out=str(run), arch="tinycnn", image_size=32, epochs=1, workers=0), SamplerConfig(batch_size=16, selection="none"), progress=False, say=lambda *a: None)
    plain = base / "plain.txt"
    plain.write_text("not a folder\n")
    return {"root": root, "ckpt": run / "checkpoint.pt", "file": plain, "base": base}


def damage_root(root: Path, kind: str) -> None:
    r = Root(root)
    shard = r.shard_names("train")[0]
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8))
    if kind == "info-garbage":
        r.info_path.write_bytes(garbage)
    elif kind == "info-list":
        r.info_path.write_text("[1, 2]")
    elif kind == "info-classes-number":
        r.info_path.write_text('{"format": "wv-root/1", "classes": 5, "splits": {}}')
    elif kind == "info-class-shape":
        r.info_path.write_text('{"format": "wv-root/1", "classes": [{"label": "x"}], "splits": {}}')
    elif kind == "manifest-garbage":
        r.manifest_path.write_bytes(garbage)
    elif kind == "shards-table-garbage":
        r.shards_table_path.write_bytes(garbage)
    elif kind == "label-weights-garbage":
        r.score_path("label_weights", shard).write_bytes(garbage)
    elif kind == "score-garbage":
        r.score_path("lda", shard).write_bytes(garbage)
    elif kind == "meta-deleted":
        r.meta_path(r.shard_names("train")[1]).unlink()
    elif kind == "score-deleted":
        r.score_path("lda", r.shard_names("train")[1]).unlink()
    elif kind == "shard-truncated":
        os.truncate(r.shard_path(shard), r.shard_path(shard).stat().st_size // 3)
    elif kind in ("offset-wrong", "label-9999"):
        column, value = ("offset", pl.col("offset") + 700) if kind == "offset-wrong" else ("label", pl.lit(9999, pl.Int64))
        manifest = pl.read_parquet(r.manifest_path)
        target = (pl.col("shard") == shard) & (pl.col("index") == 3)
        manifest.with_columns(pl.when(target).then(value).otherwise(pl.col(column)).cast(manifest.schema[column]).alias(column)).write_parquet(r.manifest_path)
    elif kind == "image-header":
        offset = r.manifest("train").filter(pl.col("shard") == shard).select("offset").collect().item(0, 0)
        data = bytearray(r.shard_path(shard).read_bytes())
        start = data.find(b"\xff\xd8\xff", offset)
        data[start : start + 200] = b"\0" * 200
        r.shard_path(shard).write_bytes(bytes(data))
    elif kind == "features-garbage":
        for name in r.shard_names("train"):
            r.features_path("lda", name).write_bytes(garbage)
    elif kind == "features-shape":
        for name in r.shard_names("train"):
            np.save(r.features_path("lda", name), np.zeros(7, dtype=np.float32))
    else:
        raise AssertionError(kind)


@pytest.fixture(scope="module")
def damaged(full_root, tmp_path_factory):
    """damaged(kind): a copy of the full root with that damage (made once per kind; the cases leave it as it is)."""
    made = {}

    def get(kind: str) -> Path:
        if kind not in made:
            copy = Path(shutil.copytree(full_root["root"], tmp_path_factory.mktemp("damaged") / kind))
            damage_root(copy, kind)
            made[kind] = copy
        return made[kind]

    return get


# -- running and checking --------------------------------------------------------------------------------------
def tree_hash(folder: Path) -> dict:
    """relative path -> (size, sha256) of every file; folders as (-1, '')."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        found[rel] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) if path.is_file() else (-1, "")
    return found


@pytest.mark.parametrize("case, damage, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence_exit_2_and_changes_nothing(case, damage, words, full_root, damaged, synth_v1, tmp_path, monkeypatch, quiet_bars):
    root = damaged(damage) if damage else full_root["root"]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    places = {"root": root, "src": synth_v1, "ckpt": full_root["ckpt"], "file": full_root["file"], "out": work / "out", "away": tmp_path / "away" / "report"}
    args = [w.format(**places) for w in words]
    before = tree_hash(root), tree_hash(work), tree_hash(full_root["base"] / "run")
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{result.output}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"{case}: stderr is not one sentence:\n{result.stderr}"
    assert NAMES.get(case, "") in lines[0], f"{case}: {lines[0]}"
    assert (tree_hash(root), tree_hash(work), tree_hash(full_root["base"] / "run")) == before, f"{case} changed files"


# -- a bug: one sentence and exit 1, the traceback on request ---------------------------------------------------
BUG = "import wv.shards.info as info; info.describe = lambda root: 1 / 0; from wv.cli import main; main()"


def test_an_unexpected_error_is_one_sentence_with_exit_1(built_root, monkeypatch, quiet_bars):
    import wv.shards.info

    monkeypatch.setattr(wv.shards.info, "describe", lambda root: 1 / 0)
    result = CliRunner().invoke(main, ["shard", "info", str(built_root)], catch_exceptions=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert "wv shard info" in lines[0] and "ZeroDivisionError" in lines[0] and "--debug" in lines[0]
    shown = CliRunner().invoke(main, ["--debug", "shard", "info", str(built_root)])
    assert shown.exit_code == 1 and isinstance(shown.exception, ZeroDivisionError)


def test_wv_debug_shows_the_traceback(built_root):
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    plain = subprocess.run([sys.executable, "-c", BUG, "shard", "info", str(built_root)], capture_output=True, text=True, env={k: v for k, v in env.items() if k != "WV_DEBUG"})
    debug = subprocess.run([sys.executable, "-c", BUG, "shard", "info", str(built_root)], capture_output=True, text=True, env={**env, "WV_DEBUG": "1"})
    assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1 and "Traceback" not in plain.stderr
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr
