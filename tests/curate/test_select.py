"""`wv select`: decisions from drop rules, the protection of small classes, dry runs, resume, bad input.

The scores here are written by the test itself: `synthetic.clean` knows the planted noise of the
synthetic set, blurred (about 0.7 for clean samples, 0.2 for noisy ones, plus Gaussian noise).
"""

import shutil

import numpy as np
import polars as pl
import pytest

from wv.curate.select import read_selection, select
from wv.curate.select_core import allowed_drops, evaluate_rules
from wv.shards import sidecars
from wv.shards.root import Root

RULE = "synthetic.clean < 0.35"


def write_derived_score(root, synth, seed=0, name="synthetic"):
    """clean (float), subset (int 0..2, unrelated to noise), keywords (list of words) for every train sample."""
    root = Root(root)
    truth = pl.read_parquet(synth / "ground_truth.parquet").select("__key__", "is_noisy")
    rng = np.random.default_rng(seed)
    for shard in root.shard_names("train"):
        frame = sidecars.shard_keys(root, shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")
        noisy = frame["is_noisy"].cast(pl.Float64).to_numpy()
        clean = 0.7 - 0.5 * noisy + rng.normal(0, 0.15, frame.height)
        sidecars.write_scores(
            root,
            name,
            shard,
            frame.select("__key__").with_columns(
                pl.Series("clean", clean, dtype=pl.Float32),
                pl.Series("subset", rng.integers(0, 3, frame.height), dtype=pl.Int8),
                pl.Series("keywords", [["noisy" if n else "clean", "word"] for n in noisy], dtype=pl.List(pl.String)),
            ),
        )


@pytest.fixture(scope="module")
def scored_root(built_root, synth_v1, tmp_path_factory):
    """built_root plus the `synthetic` score (read-only; copy it to change it)."""
    root = shutil.copytree(built_root, tmp_path_factory.mktemp("select") / "root")
    write_derived_score(root, synth_v1)
    return root


@pytest.fixture
def scored_copy(scored_root, tmp_path):
    return shutil.copytree(scored_root, tmp_path / "root")


def decisions(root) -> pl.DataFrame:
    """The selection joined with labels, the score and the ground truth."""
    scores = sidecars.read_scores(Root(root), "synthetic", split="train").collect()
    labels = Root(root).manifest("train").select("__key__", "label").collect()
    return read_selection(root).collect().join(scores, on=["__key__", "shard"]).join(labels, on="__key__")


def noisy_keys(synth) -> set:
    truth = pl.read_parquet(synth / "ground_truth.parquet")
    return set(truth.filter(pl.col("is_noisy"))["__key__"].to_list())


def test_select_drops_mostly_the_planted_noise(scored_copy, synth_v1, wv_cli, last_json):
    result = wv_cli("select", scored_copy, "--drop", RULE, "--workers", 1, "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    table = decisions(scored_copy)
    root = Root(scored_copy)
    for shard in root.shard_names("train"):  # a sidecar per shard, the shard's keys in shard order
        assert pl.read_parquet(root.score_path("selection", shard))["__key__"].equals(sidecars.shard_keys(root, shard))
    dropped = table.filter(~pl.col("keep"))
    assert figures["dropped"] == dropped.height > 0 and figures["kept"] == table.height - dropped.height
    assert figures["samples"] == table.height == root.manifest("train").select(pl.len()).collect().item()
    assert (dropped["rule"] == RULE).all() and table.filter(pl.col("keep"))["rule"].null_count() == table["keep"].sum()
    assert figures["rules"] == [
        {"rule": RULE, "matched": int((table["clean"] < 0.35).sum()), "first": int((table["clean"] < 0.35).sum()), "dropped": dropped.height, "protected": figures["protected"]}
    ]
    noisy = noisy_keys(synth_v1)
    precision = np.mean([k in noisy for k in dropped["__key__"]])
    base = np.mean([k in noisy for k in table["__key__"]])
    assert precision > 0.85 and precision > 2 * base
    assert sum(c["samples"] for c in figures["classes"]) == figures["samples"]
    assert [c["drop_rate"] for c in figures["classes"]] == sorted((c["drop_rate"] for c in figures["classes"]), reverse=True)
    assert figures["paths"]["selection"].endswith("scores/selection")


def test_first_matching_rule_is_recorded(scored_copy):
    rules = ["synthetic.subset == 2", "clean < 0.35"]
    figures = select(scored_copy, rules, min_per_class=0, max_drop_fraction=1.0, progress=False)
    table = decisions(scored_copy)
    both = table.filter((pl.col("subset") == 2) & (pl.col("clean") < 0.35))
    assert both.height and (both["rule"] == rules[0]).all()
    only_second = table.filter((pl.col("subset") != 2) & (pl.col("clean") < 0.35))
    assert (only_second["rule"] == rules[1]).all()
    assert figures["rules"][1]["matched"] == both.height + only_second.height
    assert figures["rules"][1]["first"] == only_second.height
    assert figures["dropped"] == table.filter((pl.col("subset") == 2) | (pl.col("clean") < 0.35)).height


def test_small_classes_are_protected_keeping_the_least_bad(scored_copy, wv_cli, last_json):
    min_per_class, fraction = 18, 0.2
    result = wv_cli("select", scored_copy, "--drop", RULE, "--min-per-class", min_per_class, "--max-drop-fraction", fraction, "--workers", 1, "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    table = decisions(scored_copy)
    assert figures["protected"] > 0
    for (label,), group in table.group_by("label"):
        n, dropped = group.height, group.filter(~pl.col("keep"))
        protected = group.filter(pl.col("keep") & pl.col("matched").is_not_null())
        assert dropped.height <= allowed_drops(n, min_per_class, fraction)
        assert dropped.height + protected.height == (group["clean"] < 0.35).sum()
        if protected.height:  # the protection bit: exactly the allowed number go, the worst ones
            assert dropped.height == allowed_drops(n, min_per_class, fraction)
            if dropped.height:
                assert protected["clean"].min() >= dropped["clean"].max()
    assert figures["protected"] == table.filter(pl.col("keep") & pl.col("matched").is_not_null()).height
    assert sum(c["protected"] for c in figures["classes"]) == figures["protected"]


def test_allowed_drops():
    assert allowed_drops(100, 10, 0.5) == 50
    assert allowed_drops(15, 10, 0.5) == 5
    assert allowed_drops(8, 10, 0.5) == 0
    assert allowed_drops(10, 0, 0.3) == 3
    assert allowed_drops(10, 0, 1.0) == 10


# -- the decisions on an in-memory frame, no dataset root ----------------------------------------------
def test_rules_decide_on_an_in_memory_frame():
    """Class 0: 10 samples, 8 below 0.5 but only 5 may go (min 5 per class): the 3 least bad (highest
    s.x) are kept as protected. Class 1: 20 samples, none past the limits; s.flag matches where the
    first rule does not, and a missing value never fires."""
    x0 = [0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.47, 0.49, 0.8, 0.9]
    x1 = [0.9] * 16 + [0.1, 0.2, None, 0.9]
    flag1 = [False] * 15 + [True, True, False, False, None]
    frame = pl.DataFrame(
        {
            "__key__": [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(20)],
            "meta.label": pl.Series([0] * 10 + [1] * 20, dtype=pl.Int32),
            "meta.source": ["flickr", "google"] * 15,
            "s.x": pl.Series(x0 + x1, dtype=pl.Float32),
            "s.flag": [None] * 10 + flag1,
        }
    )
    rules = ["s.x < 0.5", "flag"]
    decided = evaluate_rules(frame, rules, min_per_class=5, max_drop_fraction=0.5, seed=0)
    assert decided.columns == ["__key__", "keep", "rule", "matched"] and decided["__key__"].equals(frame["__key__"])
    keep = decided["keep"].to_list()
    assert keep[:10] == [False] * 5 + [True] * 5  # 0.45, 0.47, 0.49 protected; 0.8, 0.9 never matched
    assert decided["matched"].to_list()[:10] == [rules[0]] * 8 + [None] * 2
    assert decided["rule"].to_list()[:10] == [rules[0]] * 5 + [None] * 5
    assert keep[10:] == [True] * 15 + [False, False, False, True, True]
    assert decided["rule"].to_list()[25:] == [rules[1], rules[0], rules[0], None, None]


def test_in_memory_decisions_are_the_commands(scored_copy):
    """evaluate_rules on the whole split as one frame decides what `wv select` writes, protection included."""
    from wv.curate.select import shard_frame

    rules = [RULE, "synthetic.subset == 1 and synthetic.clean < 0.45"]
    figures = select(scored_copy, rules, min_per_class=18, max_drop_fraction=0.2, progress=False)
    assert figures["protected"] > 0
    root = Root(scored_copy)
    columns = ["synthetic.clean", "synthetic.subset"]
    frame = pl.concat([shard_frame(root, shard, columns) for shard in root.shard_names("train")])
    decided = evaluate_rules(frame, rules, min_per_class=18, max_drop_fraction=0.2, seed=0)
    assert decided.equals(read_selection(scored_copy).collect().drop("shard"))


def test_dry_run_writes_nothing_and_matches_the_real_run(scored_copy, wv_cli, last_json):
    args = ["--drop", RULE, "--drop", "synthetic.subset == 2 and clean < 0.5", "--min-per-class", 15, "--workers", 1]
    dry = wv_cli("select", scored_copy, *args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert not (Root(scored_copy).path / "scores" / "selection").exists()
    assert "dry run" in dry.stdout and f"rule '{RULE}'" in dry.stdout and "classes by drop rate" in dry.stdout
    real = wv_cli("select", scored_copy, *args, "--json")
    strip = lambda f: {k: v for k, v in f.items() if k not in ("paths", "shards_written", "shards_skipped")}  # noqa: E731
    assert strip(last_json(dry.stdout)) == strip(last_json(real.stdout))


def test_rerun_resumes_and_changed_rules_need_overwrite(scored_copy, wv_cli, last_json):
    first = last_json(wv_cli("select", scored_copy, "--drop", RULE, "--workers", 1, "--json").stdout)
    root = Root(scored_copy)
    shards = root.shard_names("train")
    before = read_selection(scored_copy).collect()
    root.score_path("selection", shards[1]).unlink()
    again = last_json(wv_cli("select", scored_copy, "--drop", RULE, "--workers", 1, "--json").stdout)
    assert again["shards_written"] == 1 and again["shards_skipped"] == len(shards) - 1
    assert read_selection(scored_copy).collect().equals(before)
    assert {k: again[k] for k in ("kept", "dropped", "rules")} == {k: first[k] for k in ("kept", "dropped", "rules")}
    changed = wv_cli("select", scored_copy, "--drop", "synthetic.clean < 0.2", "--workers", 1)
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr and "Traceback" not in changed.output
    replaced = last_json(wv_cli("select", scored_copy, "--drop", "synthetic.clean < 0.2", "--overwrite", "--workers", 1, "--json").stdout)
    assert replaced["shards_written"] == len(shards) and replaced["dropped"] < first["dropped"]


def test_workers_give_the_same_decisions(scored_copy):
    rules = [RULE, "subset == 1 and clean < 0.45"]
    one = select(scored_copy, rules, min_per_class=18, max_drop_fraction=0.2, name="one", workers=1, progress=False)
    two = select(scored_copy, rules, min_per_class=18, max_drop_fraction=0.2, name="two", workers=2, progress=False)
    assert {k: v for k, v in one.items() if k != "paths"} == {k: v for k, v in two.items() if k != "paths"}
    assert read_selection(scored_copy, name="one").collect().equals(read_selection(scored_copy, name="two").collect())


def test_a_missing_value_is_kept_unless_the_rule_asks(scored_copy):
    root = Root(scored_copy)
    shard = root.shard_names("train")[0]
    frame = pl.read_parquet(root.score_path("synthetic", shard))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("clean")).alias("clean"))
    sidecars.write_scores(root, "synthetic", shard, frame)
    select(scored_copy, ["clean < 2"], min_per_class=0, max_drop_fraction=1.0, name="all", progress=False)
    chosen = pl.read_parquet(root.score_path("all", shard))
    assert chosen["keep"].head(5).to_list() == [True] * 5 and not chosen["keep"].slice(5).any()
    select(scored_copy, ["clean is null"], min_per_class=0, max_drop_fraction=1.0, name="nulls", progress=False)
    assert pl.read_parquet(root.score_path("nulls", shard))["keep"].head(5).to_list() == [False] * 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--drop", "nosuch < 0.1"], "no score has a column 'nosuch'"),
        (["--drop", "synthetic.clean < 'x'"], "cannot compare"),
        (["--drop", "__import__('os').system('touch pwned')"], "cannot read|expected"),
        (["--drop", RULE, "--max-drop-fraction", "1.5"], "--max-drop-fraction must be a fraction"),
    ],
)
def test_bad_input_is_one_sentence(scored_copy, wv_cli, args, message):
    import re

    result = wv_cli("select", scored_copy, *args, "--workers", 1)
    assert result.exit_code == 2 and re.search(message, result.stderr), result.output
    assert "Traceback" not in result.output and not (Root(scored_copy).path / "scores" / "selection").exists()


def test_missing_score_shard_is_refused(scored_copy, wv_cli):
    root = Root(scored_copy)
    root.score_path("synthetic", root.shard_names("train")[-1]).unlink()
    result = wv_cli("select", scored_copy, "--drop", RULE, "--workers", 1)
    assert result.exit_code == 2 and "score 'synthetic' is missing for 1 of" in result.stderr


def test_no_rule_and_no_root(tmp_path, wv_cli):
    assert wv_cli("select", tmp_path).exit_code == 2  # --drop is required
    result = wv_cli("select", tmp_path / "nope", "--drop", RULE)
    assert result.exit_code == 2 and "not a wv dataset root" in result.stderr
