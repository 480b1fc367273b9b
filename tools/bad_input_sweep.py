"""Sweep every command's numeric options and path arguments with bad values, and count how each run ends.

For each command of the `wv` tree (walked from wv.cli.main), starting from a small valid invocation
on a tiny synthetic root, one value at a time is replaced: every INT or FLOAT option gets -1, nan and
2**64; every path argument gets a missing path, a plain file and an empty folder. Each run goes on
a fresh copy of the root, in-process, and ends as one of:
  refused       exit 2, one line on stderr, nothing under the root or the working folder changed
  refused+wrote exit 2, one line, but files changed
  accepted      exit 0 (often right: -1 can mean "none", 0 "off"; read the list)
  bug           exit 1 (one sentence from the top-level handler)
  other         anything else (several lines, a traceback)
The tally and every run that is not `refused` or `accepted` are printed; `--list-accepted` prints those too.

    python tools/bad_input_sweep.py                 # about 5 minutes on 2 cores
    python tools/bad_input_sweep.py --only train,eval --list-accepted
"""

import argparse
import collections
import functools
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import tqdm  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from wv.cli import main  # noqa: E402

TINY = ["--arch", "tinycnn", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0"]
BASE = {  # a valid invocation of each command ({root}, {src}, {ckpt}, {out} filled in per run)
    "synth": ["{out}", "--classes", "3", "--per-class", "4", "--val-per-class", "1"],
    "shard build": ["{src}", "{out}", "--workers", "1"],
    "shard verify": ["{root}"],
    "shard info": ["{root}"],
    "shard bake": ["{root}", "{out}", "--scores", "lda", "--workers", "1"],
    "score lda": ["{root}", "--topics", "4", "--passes", "1", "--no-below", "1", "--workers", "1", "--overwrite"],
    "score keywords": ["{root}", "--min-docs", "1", "--max-doc-share", "0.9", "--workers", "1", "--overwrite"],
    "score density": ["{root}", "--features", "lda", "--workers", "1", "--name", "dens"],
    "score confidence": ["{root}", "--model", "{ckpt}", "--name", "conf"],
    "embed": ["{root}", "--model", "{ckpt}", "--name", "probe2"],
    "curriculum split": ["{root}", "--by", "lda:similarity", "--name", "cur2"],
    "select": ["{root}", "--drop", "lda.similarity < 0.1", "--name", "sel2"],
    "audit": ["{root}", "--out", "{out}"],
    "stream": ["{root}"],
    "train": ["--shards", "{root}", *TINY, "--out", "{out}"],
    "eval": ["--shards", "{root}", "--checkpoint", "{ckpt}", "--out", "{out}"],
}
NUMBERS = ("-1", "nan", str(2**64))


def commands(group: click.Group, prefix=()) -> dict:
    found = {}
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.update(commands(command, path))
        else:
            found[" ".join(path)] = command
    return found


def mutations(name: str, command: click.Command, base: list) -> list:
    runs = []
    for param in command.params:
        if isinstance(param, click.Option) and param.type in (click.INT, click.FLOAT) and not param.is_flag:
            flag = max(param.opts, key=len)
            for value in NUMBERS:
                if param.type is click.INT and value == "nan":
                    continue
                args = list(base)
                if flag in args:
                    args[args.index(flag) + 1] = value
                else:
                    args += [flag, value]
                runs.append((f"{name} {flag} {value}", args))
        elif isinstance(param, click.Argument) and isinstance(param.type, click.Path):
            for index, word in enumerate(base):
                if word.startswith("{") and word in ("{root}", "{src}"):
                    for bad in ("{missing}", "{file}", "{empty}"):
                        runs.append((f"{name} {param.name}={bad}", base[:index] + [bad] + base[index + 1 :]))
                    break
    return runs


def tree_hash(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "" for p in sorted(folder.rglob("*"))} if folder.exists() else {}


def make_root(base: Path) -> dict:
    from wv.curate.curriculum import curriculum_split
    from wv.curate.lda import LdaOptions, score_lda
    from wv.curate.options import CurriculumOptions
    from wv.curate.select import select
    from wv.shards.build import BuildOptions, build
    from wv.stream.config import SamplerConfig
    from wv.synth import SynthOptions, write_synth
    from wv.train.trainer import TrainOptions, train

    src, root = base / "src", base / "root"
    write_synth(src, SynthOptions(classes=4, per_class=12, noise=0.3, val_per_class=2, seed=0))
    for split in ("train", "val"):
        build(src, root, BuildOptions(split=split, shard_size=16), workers=1, progress=False)
    score_lda(root, LdaOptions(topics=4, passes=1, no_below=1), progress=False)
    select(root, ["lda.similarity < 0.2"], min_per_class=0, max_drop_fraction=1.0, progress=False)
    curriculum_split(root, CurriculumOptions(by="lda:similarity", subsets=3), progress=False)
    train(root, TrainOptions(out=str(base / "run"), arch="tinycnn", image_size=32, epochs=1, workers=0), SamplerConfig(batch_size=16, selection="none"), progress=False, say=lambda *a: None)
    (base / "plain.txt").write_text("not a folder\n")
    return {"src": src, "root": root, "ckpt": base / "run" / "checkpoint.pt", "file": base / "plain.txt"}


def quiet_bars() -> None:
    original = tqdm.std.tqdm.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        kwargs.setdefault("disable", True)
        original(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = init


def run_one(label: str, words: list, name: str, made: dict, work: Path) -> tuple[str, str]:
    case = work / f"case-{abs(hash(label)) % 10**8}"
    root = Path(shutil.copytree(made["root"], case / "root"))
    (case / "cwd").mkdir()
    (case / "empty").mkdir()
    places = {"root": root, "src": made["src"], "ckpt": made["ckpt"], "file": made["file"], "out": case / "out", "missing": case / "missing", "empty": case / "empty"}
    args = name.split() + [w.format(**places) for w in words]
    before = tree_hash(root), tree_hash(case / "cwd")
    cwd = os.getcwd()
    os.chdir(case / "cwd")
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    one = len(lines) == 1 and lines[0].startswith("Error: ")
    changed = (tree_hash(root), tree_hash(case / "cwd")) != before
    shutil.rmtree(case, ignore_errors=True)
    if result.exit_code == 2 and one:
        return ("refused+wrote" if changed else "refused"), lines[0]
    if result.exit_code == 0:
        return "accepted", ""
    if result.exit_code == 1 and one:
        return "bug", lines[0]
    detail = repr(result.exception) if result.exception is not None else " / ".join(lines[-2:])
    return "other", f"exit {result.exit_code}: {detail[:300]}"


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="Comma-separated commands (e.g. train,shard build).")
    parser.add_argument("--list-accepted", action="store_true")
    parser.add_argument("--progress", action="store_true", help="Name each run on stderr as it starts (to see which one hangs or dies).")
    args = parser.parse_args()
    quiet_bars()
    only = {o.strip() for o in args.only.split(",") if o.strip()}
    with tempfile.TemporaryDirectory(prefix="wv-sweep-") as tmp:
        made = make_root(Path(tmp) / "made")
        tally, shown = collections.Counter(), []
        for name, command in sorted(commands(main).items()):
            if name not in BASE or (only and name not in only):
                continue
            for label, words in mutations(name, command, BASE[name]):
                if args.progress:
                    print(f"run: {label}", file=sys.stderr, flush=True)
                outcome, line = run_one(label, words, name, made, Path(tmp))
                tally[outcome] += 1
                if outcome not in ("refused", "accepted") or (args.list_accepted and outcome == "accepted"):
                    shown.append(f"{outcome:13s} {label}: {line}")
    print("\n".join(shown))
    print(f"{sum(tally.values())} bad inputs: " + ", ".join(f"{k} {v}" for k, v in tally.most_common()))


if __name__ == "__main__":
    main_()
