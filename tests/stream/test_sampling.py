"""Epoch plans from metadata: realised frequencies vs target, equal steps, curriculum, gates, caps,
locality, shuffle quality and bad options. No image is read here."""

import numpy as np
import pytest
from scipy import stats

from wv.errors import WvError
from wv.stream.config import SamplerConfig
from wv.stream.sampling import Planner, capped, systematic_counts
from wv.stream.schedule import Curriculum, Gate, Schedule, split_shares
from wv.stream.table import load_table


def planner(root, world_size=1, **options):
    config = SamplerConfig(**options)
    return Planner(load_table(root, config), config, world_size)


def all_rows(p: Planner, epoch: int):
    plan = p.plan(epoch)
    return plan, [p.rank_rows(plan, r) for r in range(plan.world_size)]


def chi_square_bound(observed, expected, alpha=1e-3):
    """The chi-square statistic, and the bound a multinomial draw would stay under with prob. 1 - alpha."""
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    statistic = (((observed - expected) ** 2) / expected).sum()
    return statistic, stats.chi2.ppf(1 - alpha, len(expected) - 1)


# -- realised frequencies against the target ----------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_balance_draws_every_class_equally_often(stream_root, seed):
    p = planner(stream_root, world_size=2, batch_size=8, class_balance="draw", epoch_size=800, seed=seed)
    table = p.table
    per_class = np.bincount(table.label)
    assert per_class.max() >= 3 * per_class.min()  # the data really is imbalanced
    for epoch in range(3):
        plan, ranks = all_rows(p, epoch)
        drawn = np.bincount(table.label[np.concatenate([r.ravel() for r in ranks])], minlength=len(per_class))
        target = np.full(len(per_class), plan.draws / len(per_class))
        statistic, bound = chi_square_bound(drawn, target)
        assert statistic < bound, (drawn, target)
        assert drawn.sum() == plan.draws == 2 * plan.steps * 8


def test_subset_weights_as_draws_match_target(stream_root):
    p = planner(stream_root, batch_size=8, subset_weights="1,0.5,0.25", subset_weights_as="draw", epoch_size=2000, max_repeat=30)
    subset = p.table.subset
    available = np.bincount(subset, minlength=3)
    plan, ranks = all_rows(p, 0)
    drawn = np.bincount(subset[ranks[0].ravel()], minlength=3)
    share = available * np.array([1, 0.5, 0.25])
    statistic, bound = chi_square_bound(drawn, plan.draws * share / share.sum())
    assert statistic < bound


def test_weight_column_as_draws_follows_the_score(stream_root):
    p = planner(stream_root, batch_size=8, weight_column="synthetic.p", weight_column_as="draw", epoch_size=4000, max_repeat=60)
    plan, ranks = all_rows(p, 0)
    counts = np.bincount(ranks[0].ravel(), minlength=p.table.size)
    score = p.table.scores["synthetic.p"].astype(float)
    expected = plan.draws * score / score.sum()
    assert np.all(np.abs(counts - expected) < 1 + 1e-9)  # systematic sampling: floor or ceil of the expectation
    assert np.corrcoef(counts, score)[0, 1] > 0.98


def test_loss_weights_balance_classes_in_the_loss(stream_root):
    p = planner(stream_root, batch_size=8, class_balance="loss")
    plan, ranks = all_rows(p, 0)
    rows = ranks[0].ravel()
    weight = plan.loss_weight[rows]
    assert abs(weight.mean() - 1) < 1e-5
    mass = np.bincount(p.table.label[rows], weights=weight)
    assert mass.max() / mass.min() < 1.25  # equal up to the padding draws
    assert np.bincount(rows).max() <= 2  # each sample seen once (a few twice, padding)


def test_systematic_counts_are_floor_or_ceil_and_exact():
    generator = np.random.default_rng(0)
    expected = generator.gamma(0.7, 2.0, 10_000)
    expected *= 12_345 / expected.sum()
    counts = systematic_counts(expected, generator)
    assert counts.sum() == 12_345
    assert np.all((counts == np.floor(expected)) | (counts == np.ceil(expected)))


def test_cap_moves_the_excess_to_other_samples():
    weights = np.array([100.0, 1, 1, 1, 1])
    expected = capped(weights, 20, 5, "all", 0)
    assert expected[0] == 5 and abs(expected.sum() - 20) < 1e-9 and np.allclose(expected[1:], 15 / 4)
    with pytest.raises(WvError, match="max-repeat"):
        capped(weights, 30, 5, "all", 0)


def test_repetition_is_capped_and_copies_land_in_different_batches(stream_root):
    p = planner(stream_root, world_size=2, batch_size=8, class_balance="draw", max_repeat=3, epoch_size=700, shuffle_window=64)
    plan, ranks = all_rows(p, 0)
    counts = np.bincount(np.concatenate([r.ravel() for r in ranks]))
    assert counts.max() <= 3
    for rows in ranks:
        for batch in rows:
            assert len(np.unique(batch)) == len(batch)  # window of 8 batches >= 3 copies


# -- equal steps, exact partition, locality -------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("rounding", ["pad", "trim"])
def test_every_rank_gets_the_same_steps_on_uneven_shards(uneven_root, world_size, rounding):
    p = planner(uneven_root, world_size=world_size, batch_size=4, rounding=rounding)
    plan, ranks = all_rows(p, 0)
    pool = plan.funnel["pool"]
    assert {r.shape for r in ranks} == {(plan.steps, 4)}
    per_step = world_size * 4
    assert plan.steps == (-(-pool // per_step) if rounding == "pad" else pool // per_step)
    drawn = np.concatenate([r.ravel() for r in ranks])
    assert p.table.keep[drawn].all()  # dropped samples are never drawn
    counts = np.bincount(drawn, minlength=p.table.size)
    if rounding == "pad":
        assert (counts[p.table.keep] >= 1).all()  # every kept sample once, a few twice
    assert counts.max() <= 2


def test_ranks_read_consecutive_shards(stream_root):
    p = planner(stream_root, world_size=3, batch_size=4)
    plan, ranks = all_rows(p, 0)
    position = {int(s): i for i, s in enumerate(plan.shard_order)}
    spans = []
    for rows in ranks:
        places = sorted({position[int(s)] for s in p.table.shard_id[rows.ravel()]})
        assert places == list(range(places[0], places[-1] + 1))  # a run of consecutive shards
        spans.append((places[0], places[-1]))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end  # only a boundary shard is shared


def test_plan_is_a_function_of_seed_epoch_and_world(stream_root):
    a = planner(stream_root, world_size=2, batch_size=8, class_balance="draw")
    b = planner(stream_root, world_size=2, batch_size=8, class_balance="draw")
    rows_a, rows_b = all_rows(a, 1)[1], all_rows(b, 1)[1]
    assert all(np.array_equal(x, y) for x, y in zip(rows_a, rows_b))
    other_epoch = all_rows(a, 2)[1]
    assert not np.array_equal(rows_a[0], other_epoch[0])
    other_seed = all_rows(planner(stream_root, world_size=2, batch_size=8, class_balance="draw", seed=9), 1)[1]
    assert not np.array_equal(rows_a[0], other_seed[0])


def test_shuffle_quality_matches_a_random_permutation(stream_root):
    """Distinct classes per batch: the plan's batches vs the same draws in a truly random order."""
    p = planner(stream_root, batch_size=16, class_balance="draw", epoch_size=1600)
    label = p.table.label
    ours, random_order = [], []
    generator = np.random.default_rng(0)
    for epoch in range(4):
        rows = all_rows(p, epoch)[1][0]
        ours += [len(np.unique(label[b])) for b in rows]
        shuffled = generator.permutation(rows.ravel()).reshape(rows.shape)
        random_order += [len(np.unique(label[b])) for b in shuffled]
    assert np.mean(ours) >= 0.97 * np.mean(random_order), (np.mean(ours), np.mean(random_order))
    # and not simply in shard order: a batch of 16 consecutive draws would see about as many
    assert np.mean(ours) > 6.5


# -- selection, curriculum, gates, batch mix ------------------------------------------------------------
def test_curriculum_stages_draw_only_their_subsets(stream_root):
    p = planner(stream_root, batch_size=8, curriculum="0:0;3:0,1;6:0,1,2")
    subset = p.table.subset
    for epoch, allowed in [(0, {0}), (2, {0}), (3, {0, 1}), (5, {0, 1}), (6, {0, 1, 2}), (40, {0, 1, 2})]:
        plan, ranks = all_rows(p, epoch)
        assert set(np.unique(subset[ranks[0]]).tolist()) == allowed
        assert plan.funnel["pool"] == int(np.isin(subset, list(allowed)).sum())


def test_batch_mix_fills_every_batch_with_its_shares(stream_root):
    p = planner(stream_root, batch_size=16, batch_mix="8,4,4", curriculum="0:0;1:0,1;2:0,1,2", max_repeat=20)
    subset = p.table.subset
    for epoch, shares in [(0, [16, 0, 0]), (1, [11, 5, 0]), (2, [8, 4, 4])]:
        rows = all_rows(p, epoch)[1][0]
        for batch in rows:
            assert np.bincount(subset[batch], minlength=3).tolist() == shares
    assert split_shares([128, 64, 64], [True, True, False], 256) == [171, 85, 0]


def test_epoch_gate_follows_its_schedule(stream_root):
    p = planner(stream_root, batch_size=8, gates=("synthetic.p >= 0.6@0,0@4",))
    score = p.table.scores["synthetic.p"]
    pools = []
    for epoch in range(6):
        plan, ranks = all_rows(p, epoch)
        threshold = max(0.0, 0.6 - 0.15 * epoch)
        assert (score[ranks[0].ravel()] >= threshold - 1e-6).all()
        assert plan.funnel["pool"] == int((score >= threshold).sum())
        pools.append(plan.funnel["pool"])
    assert pools == sorted(pools) and pools[-1] == p.table.size


def test_step_gate_zeroes_the_loss_weight(stream_root):
    p = planner(stream_root, batch_size=8, gates=("synthetic.p >= 0.5@0,0@200 steps",))
    plan = p.plan(1)
    assert plan.first_step == p.steps(0)
    rank = p.rank_plan(plan, 0)
    threshold = np.interp(plan.first_step + np.arange(plan.steps), [0, 200], [0.5, 0])[:, None]
    below = rank.columns.get("synthetic.p", p.table.scores["synthetic.p"][rank.rows]) < threshold
    assert (rank.weight[below] == 0).all() and (rank.weight[~below] > 0).all() and below.any()


def test_selection_skips_shards_with_nothing_kept(uneven_root):
    p = planner(uneven_root, world_size=2, batch_size=4)
    plan, ranks = all_rows(p, 0)
    read = np.unique(p.table.shard_id[np.concatenate([r.ravel() for r in ranks])])
    assert 2 not in read.tolist() and len(read) == p.table.shards - 1


def test_table_is_small_per_sample(stream_root):
    p = planner(stream_root, curriculum="0:0", selection="none", gates=("synthetic.p >= 0.1",))
    assert p.table.nbytes() / p.table.size <= 40


# -- specs and bad options --------------------------------------------------------------------------
def test_schedule_specs_parse():
    assert Curriculum.parse("0:0;3:0,1;6:0,1,2").subsets(4) == (0, 1)
    assert Schedule.parse("0.5@0,0@10")(5) == pytest.approx(0.25)
    assert Schedule.parse("0.3")(100) == pytest.approx(0.3)
    gate = Gate.parse("confidence.p_label >= 0.5@0,0@20000 steps")
    assert (gate.column, gate.op, gate.unit) == ("confidence.p_label", ">=", "step")
    assert gate.passes(np.array([0.1, 0.3, np.nan]), 10000).tolist() == [False, True, True]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"curriculum": "3:0;6:0,1"}, "start at epoch 0"),
        ({"curriculum": "0:a"}, "EPOCH:SUBSET"),
        ({"gates": ("p >= 0.5",)}, "SCORE.COLUMN"),
        ({"gates": ("synthetic.p ~ 0.5",)}, "SCORE.COLUMN >= SCHEDULE"),
        ({"gates": ("synthetic.p >= 0.5@10,0@2",)}, "increasing time"),
        ({"batch_mix": "128,64,64", "batch_size": 128}, "adds up to 256"),
        ({"subset_weights": "1,-1"}, "0 or more"),
        ({"class_balance": "yes"}, "off, draw or loss"),
        ({"batch_size": 0}, "batch-size"),
        ({"max_repeat": 0}, "max-repeat"),
    ],
)
def test_bad_options_give_one_sentence(options, message):
    with pytest.raises(WvError, match=message) as error:
        SamplerConfig(**options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"gates": ("nothere.p >= 0.5",)}, "no score 'nothere'"),
        ({"gates": ("synthetic.q >= 0.5",)}, "no column 'q'"),
        ({"selection": "mine"}, "no selection 'mine'"),
        ({"subset_weights": "1,0.5"}, "gives only 2"),
        ({"gates": ("synthetic.p >= 2",)}, "selects no samples"),
        ({"rounding": "trim", "batch_size": 512}, "fewer than one batch"),
        ({"epoch_size": 5000, "max_repeat": 2}, "max-repeat"),
    ],
)
def test_bad_options_against_the_root(stream_root, options, message):
    with pytest.raises(WvError, match=message):
        p = planner(stream_root, **options)
        p.plan(0)
