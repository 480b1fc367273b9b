"""Nothing lost, nothing outside the root: plain names, one writer per root, sidecar keys checked by
every reader, options recorded only for runs that passed their checks (issue 15 items 1, 3, 4, 5)."""

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from wv.errors import WvError
from wv.shards import sidecars
from wv.shards.root import Root, check_name
from wv.shards.verify import verify
from wv.stream.config import SamplerConfig
from wv.stream.table import load_table

BAD_NAMES = ["", ".", "..", "../models", "../../../x", "/tmp/elsewhere", "a/b", ".hidden"]

pytestmark = pytest.mark.usefixtures("quiet_bars")  # stderr holds only the one sentence


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def one_sentence(result, phrase: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and phrase in lines[0], result.stderr


def write_made_up(root: Root, name: str, reordered: str | None = None, column: str = "value", value=0.7) -> None:
    """A score for every train shard (value for all samples), one shard's rows reversed if asked."""
    for shard in root.shard_names("train"):
        frame = pl.read_parquet(root.meta_path(shard), columns=["__key__"]).with_columns(pl.lit(value).alias(column))
        root.score_path(name, shard).parent.mkdir(parents=True, exist_ok=True)
        (frame.reverse() if shard == reordered else frame).write_parquet(root.score_path(name, shard))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_not_a_plain_folder_name_is_refused_by_every_command(root_copy, wv_cli, name):
    root = Root(root_copy)
    write_made_up(root, "made_up")
    before = tree_hash(root_copy.parent)
    commands = [
        ("select", root_copy, "--drop", "made_up.value < 0.5", "--name", name, "--overwrite"),
        ("curriculum", "split", root_copy, "--by", "made_up:value", "--name", name, "--overwrite"),
        ("score", "density", root_copy, "--features", "probe", "--name", name, "--overwrite"),
    ]
    for command in commands:
        one_sentence(wv_cli(*command), "is not a plain folder name")
    assert tree_hash(root_copy.parent) == before
    with pytest.raises(WvError, match="plain folder name"):
        root.score_path(name, "train-000000")


def test_plain_names_pass():
    assert [check_name(n) for n in ("lda", "my-score_2", "v1.5", "_x")] == ["lda", "my-score_2", "v1.5", "_x"]


def test_a_folder_made_by_another_command_is_never_replaced(root_copy, wv_cli):
    root = Root(root_copy)
    write_made_up(root, "made_up")
    assert wv_cli("curriculum", "split", root_copy, "--by", "made_up:value", "--name", "subsets").exit_code == 0
    assert json.loads((root_copy / "scores" / "subsets" / "_run.json").read_text())["command"] == "curriculum split"
    before = tree_hash(root_copy / "scores")
    result = wv_cli("select", root_copy, "--drop", "made_up.value < 0.5", "--name", "subsets", "--overwrite")
    one_sentence(result, "was made by `wv curriculum split`")
    assert tree_hash(root_copy / "scores") == before


def test_a_refused_run_records_no_options(root_copy, wv_cli):
    root = Root(root_copy)
    write_made_up(root, "made_up", value=float("nan"))
    result = wv_cli("curriculum", "split", root_copy, "--by", "made_up:value", "--method", "kmeans")
    one_sentence(result, "missing values")
    assert not (root_copy / "scores" / "curriculum").exists()


def test_a_reordered_sidecar_is_refused_by_every_reader(root_copy, wv_cli):
    root = Root(root_copy)
    shard = root.shard_names("train")[1]
    write_made_up(root, "made_up", reordered=shard)
    write_made_up(root, "chosen", reordered=shard, column="keep", value=True)
    for extra in ("rule", "matched"):
        for name in root.shard_names("train"):
            path = root.score_path("chosen", name)
            pl.read_parquet(path).with_columns(pl.lit(None, pl.String).alias(extra)).write_parquet(path)
    (root_copy / "scores" / "chosen" / "_run.json").write_text(json.dumps({"command": "select", "rules": ["made_up.value < 0.5"]}))
    before = tree_hash(root_copy)
    phrase = f"does not match the samples of shard {shard} (its rows in another order)"
    one_sentence(wv_cli("select", root_copy, "--drop", "made_up.value < 0.5", "--name", "other"), phrase)
    one_sentence(wv_cli("curriculum", "split", root_copy, "--by", "made_up:value"), phrase)
    one_sentence(wv_cli("audit", root_copy, "--selection", "chosen", "--out", root_copy.parent / "report"), phrase)
    assert tree_hash(root_copy) == before
    one_sentence(wv_cli("shard", "bake", root_copy, root_copy.parent / "baked", "--scores", "made_up", "--split", "train"), phrase)
    for config in (SamplerConfig(selection="chosen"), SamplerConfig(selection="none", gates=("made_up.value >= 0.5",))):
        with pytest.raises(WvError, match=r"does not match the samples of shard .* \(its rows in another order\)"):
            load_table(root_copy, config)


def test_a_short_sidecar_is_refused_in_the_same_sentence(root_copy):
    root = Root(root_copy)
    write_made_up(root, "made_up")
    shard = root.shard_names("train")[0]
    path = root.score_path("made_up", shard)
    pl.read_parquet(path).head(3).write_parquet(path)
    with pytest.raises(WvError, match=f"does not match the samples of shard {shard} \\(3 rows for its"):
        sidecars.read_columns(root, shard, ["made_up.value"])


def test_verify_checks_score_sidecars_and_the_class_list(root_copy):
    root = Root(root_copy)
    first, second = root.shard_names("train")[:2]
    write_made_up(root, "made_up", reordered=first)
    path = root.score_path("made_up", second)
    pl.read_parquet(path).head(5).write_parquet(path)
    info = json.loads(root.info_path.read_text())
    info["classes"] = info["classes"][:-1]
    root.info_path.write_text(json.dumps(info))
    problems = verify(root_copy, decode=False, progress=False)["problems"]
    assert any(first in p and "its rows in another order" in p for p in problems), problems
    assert any(second in p and "5 rows for its" in p for p in problems), problems
    assert any("class list" in p for p in problems), problems


def test_audit_of_a_path_that_is_not_a_root_creates_nothing(tmp_path, wv_cli):
    result = wv_cli("audit", tmp_path / "nothing")
    assert result.exit_code == 2 and "not a wv dataset root" in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_bake_after_a_killed_build_is_refused(root_copy, wv_cli):
    info = json.loads((root_copy / "wv.json").read_text())
    info["splits"]["train"]["complete"] = False  # as a train build killed after val was built
    (root_copy / "wv.json").write_text(json.dumps(info))
    one_sentence(wv_cli("shard", "bake", root_copy, root_copy.parent / "baked"), "the train split")
    assert not (root_copy.parent / "baked").exists()


def test_a_second_writer_is_refused_while_the_lock_is_held(root_copy, wv_cli):
    write_made_up(Root(root_copy), "made_up")
    before = tree_hash(root_copy)
    with open(Root(root_copy).lock_path, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for command in (("select", root_copy, "--drop", "made_up.value < 0.5", "--overwrite"), ("curriculum", "split", root_copy, "--by", "made_up:value")):
            one_sentence(wv_cli(*command), "another wv command is writing to")
    assert tree_hash(root_copy) == before
    assert wv_cli("select", root_copy, "--drop", "made_up.value < 0.5").exit_code == 0


def test_two_selects_at_once_lose_nothing(root_copy):
    root = Root(root_copy)
    write_made_up(root, "made_up")
    command = [sys.executable, "-m", "wv", "select", str(root_copy), "--drop", "made_up.value < 0.5", "--overwrite"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    for code, stderr in results:  # each either wrote the selection or was refused in one sentence
        assert code == 0 or (code == 2 and "another wv command is writing to" in stderr), stderr
    assert any(code == 0 for code, _ in results)
    for shard in root.shard_names("train"):
        assert sidecars.read_score(root, "selection", shard, ["keep"])["keep"].all()
    assert json.loads((root_copy / "scores" / "selection" / "_run.json").read_text())["command"] == "select"
    assert (root_copy / "scores" / "selection" / "_summary.json").is_file()
