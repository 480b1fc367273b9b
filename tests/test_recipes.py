"""Every `sh` code block of docs/recipes.md runs, line by line, on a small `wv synth` root.

The first block (the shards) builds the root from a synthetic WebVision; each write-up's block then
runs on a copy of that root of its own (recipes write score sidecars under fixed names, and one
recipe's `wv select` would be applied by the next one's `wv train`). Each `wv` line runs in-process
with the toy overrides below appended (click keeps the last value of a repeated option), and must
exit 0; every run folder, evaluation and pseudo-label sidecar it names must then exist.
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from wv.cli import main
from wv.curate import nltk_data
from wv.errors import WvError
from wv.models import check_arch
from wv.synth import SynthOptions, write_synth

DOC = Path(__file__).parents[1] / "docs" / "recipes.md"
WRITE_UPS = ("gombru 2017", "Malong 2017", "SenseTime 2018", "ACRV/ANU 2018", "WeChat 2020")
CLASSES, PER_CLASS, VAL_PER_CLASS = 4, 12, 2

# -- toy overrides, appended to each verb's line ---------------------------------------------------
TRAINING = ("--arch", "tinycnn", "--width", "16", "--epochs", "4", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--log-every", "2")
LOADER = ("--batch-size", "16", "--loader-workers", "0", "--device", "cpu")
OVERRIDES = {
    ("shard", "build"): ("--shard-size", "16", "--workers", "1"),
    ("shard", "verify"): ("--workers", "1"),
    ("score", "lda"): ("--topics", "4", "--passes", "4", "--no-below", "2", "--workers", "1"),  # 48 short texts
    ("score", "keywords"): ("--min-docs", "2", "--max-doc-share", "0.6", "--workers", "1"),  # 4 classes: a class word is in 25%
    ("score", "density"): ("--device", "cpu"),
    ("curriculum", "split"): (),
    ("embed",): LOADER,
    ("relabel",): LOADER,
    ("select",): ("--workers", "1"),
    ("stream",): ("--batch-size", "16"),
    ("train",): TRAINING,
    ("pretrain",): TRAINING,
    ("eval",): ("--batch-size", "8", "--workers", "0", "--device", "cpu"),  # the recipe's crops are kept
}
TOY_SIZE, TOY_LARGER = 32, 48  # 48 where the recipe asks for a larger size, and for 3 x 3 tiles of 16 px


def toy_overrides(words: list[str]) -> tuple[str, ...]:
    verb = next((v for v in OVERRIDES if tuple(words[1 : 1 + len(v)]) == v), None)
    assert verb, f"no toy overrides for `{shlex.join(words[:3])}`: add the verb to OVERRIDES (an empty tuple if it needs none)"
    if verb not in (("train",), ("pretrain",)):
        return OVERRIDES[verb]
    larger = "--image-size" in words or "permutation" in words
    return OVERRIDES[verb] + ("--image-size", str(TOY_LARGER if larger else TOY_SIZE))


# -- reading the doc -------------------------------------------------------------------------------
def sh_blocks() -> list[tuple[str, list[list[str]]]]:
    """(the section's heading, the block's command lines as words) for every ```sh block, in order."""
    blocks, heading, lines = [], None, None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.strip() == "```sh":
            lines = []
        elif line.strip() == "```" and lines is not None:
            text = "\n".join(lines).replace("\\\n", " ")
            blocks.append((heading, [w for w in (shlex.split(x, comments=True) for x in text.splitlines()) if w]))
            lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


BLOCKS = sh_blocks()
SETUP = BLOCKS[0]
RECIPES = {heading.split(":")[0]: lines for heading, lines in BLOCKS[1:]}


def expand(words: list[str], variables: dict) -> list[str]:
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: str(variables[m.group(1)]), w) for w in words]


def run_block(lines: list[list[str]], variables: dict, runner: CliRunner) -> list[list[str]]:
    """Run the block's lines in order; return the `wv` lines run (expanded, without the overrides)."""
    ran = []
    for words in lines:
        if len(words) == 1 and re.fullmatch(r"\w+=.*", words[0]):
            name, value = words[0].split("=", 1)
            variables.setdefault(name, value)  # the test's own ROOT, RUNS, WEBVISION win
            continue
        assert words[0] == "wv", f"a recipe line that is neither `wv ...` nor VAR=value: {shlex.join(words)}"
        words = expand(words, variables)
        result = runner.invoke(main, [*words[1:], *toy_overrides(words)], catch_exceptions=False)
        assert result.exit_code == 0, f"{shlex.join(words)}\nexit {result.exit_code}\n{result.output}"
        ran.append(words)
    return ran


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


# -- the root ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recipe_root(tmp_path_factory) -> Path:
    """The first block of the doc run on a 4-class synthetic WebVision (12 images a class, 48 x 40 px)."""
    base = tmp_path_factory.mktemp("recipes")
    write_synth(base / "webvision", SynthOptions(classes=CLASSES, per_class=PER_CLASS, val_per_class=VAL_PER_CLASS, width=48, height=40, seed=0))
    run_block(SETUP[1], {"WEBVISION": base / "webvision", "ROOT": base / "root", "RUNS": base / "runs"}, CliRunner())
    return base / "root"


def test_the_doc_has_every_write_up_and_starts_with_the_shards():
    assert SETUP[0].startswith("Before any recipe") and [w[:3] for w in SETUP[1] if w[0] == "wv"][0] == ["wv", "shard", "build"]
    assert sorted(RECIPES) == sorted(WRITE_UPS)


def test_every_architecture_named_is_one_wv_builds():
    archs = {option(words, "--arch") for _, lines in BLOCKS for words in lines} - {None}
    assert {"resnet50", "inception_v3", "densenet121", "seresnet101", "resnext101_32x8d", "resnest101e"} <= archs
    for arch in archs:
        check_arch(arch)


@pytest.mark.parametrize("write_up", WRITE_UPS)
def test_recipe_runs_end_to_end(write_up, recipe_root, tmp_path):
    if write_up == "WeChat 2020":
        try:
            nltk_data.require_lexicon()
        except WvError as error:  # make test installs WordNet; `wv score keywords` cannot run without it
            pytest.skip(f"wv score keywords needs WordNet: {error}")
    root, runs = Path(shutil.copytree(recipe_root, tmp_path / "root")), tmp_path / "runs"
    ran = run_block(RECIPES[write_up], {"ROOT": root, "RUNS": runs}, CliRunner())

    for words in ran:
        out = option(words, "--out")
        if words[1] in ("train", "pretrain"):
            assert (Path(out) / "checkpoint.pt").is_file() and (Path(out) / "train.json").is_file(), shlex.join(words)
            if "--init" in words:  # the chain carries the weights on: the whole body of the run it starts from
                init = json.loads((Path(out) / "train.json").read_text())["init"]
                assert init["body_loaded"] == init["body_tensors"] > 0, shlex.join(words)
        if words[1] == "relabel":
            assert list((root / "scores" / (option(words, "--name") or "pseudo")).glob("train-*.parquet"))
    last = ran[-1]
    assert last[1] == "eval", f"{write_up}: a recipe ends with its evaluation"
    figures = json.loads((Path(option(last, "--out")) / "eval.json").read_text())
    assert figures["n"] == CLASSES * VAL_PER_CLASS and figures["crops"] == int(option(last, "--crops"))
    if last.count("--checkpoint") > 1:
        assert len(figures["models"]) == last.count("--checkpoint")
