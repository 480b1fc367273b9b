"""The plan of an epoch, made from metadata alone (manifest + sidecars), before any image is read.

    select   selection.keep, the curriculum stage's subsets, the gates over epochs
    weigh    class balance w_i = N / N_class(i), subset weights, a score column; each realised as
             draws (how often a sample is drawn) or as a loss weight carried in the batch
    size     steps per rank = epoch size / (world size x batch size), rounded (pad | trim): every rank
             gets exactly the same number of batches
    draw     per stratum (the whole pool, or one subset per --batch-mix share): expected draws
             E_i = T w_i / sum(w), capped at --max-repeat (the excess goes to the others), made whole
             numbers by systematic sampling over a random order (each sample gets floor(E_i) or
             ceil(E_i) draws, the total is exactly T)
    order    shards in a seeded order, each shard's draws in tar order; this sequence is cut into
             world-size equal pieces (rank r reads consecutive shards; only the boundary shards are
             shared by two ranks)
    deal     a rank's piece is cut into windows of --shuffle-window draws; each window's draws are
             put in a random order (the copies of one sample kept together) and dealt round-robin
             into the window's batches, so copies land in different batches
The result for one rank is a (steps, batch) table of rows; every random choice comes from
(seed, epoch, rank), never from the number of loader workers, so the batches are a function of
(config, epoch, world size) alone, and any batch can be produced on its own (exact resume).
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

from wv import runtime
from wv.errors import WvError
from wv.stream.config import ROOT_WINDOW, SamplerConfig
from wv.stream.schedule import split_shares
from wv.stream.table import SampleTable

DRAW, SHARDS, DEAL = 1, 2, 3  # rng streams


def rng(config: SamplerConfig, *path) -> np.random.Generator:
    return runtime.rng(config.seed, *path)


@dataclass
class Stratum:
    """Draws that fill `share` places of every batch (the whole pool, or one curriculum subset)."""

    name: str
    share: int
    rows: np.ndarray  # int64 selected rows, ascending
    counts: np.ndarray | None = None  # int64 draws of each row this epoch
    target: np.ndarray | None = None  # float64 ideal draws of each row (before the cap and rounding)
    sequence: tuple | None = None  # (rows, counts) of drawn rows in reading order, made once per epoch


@dataclass
class EpochPlan:
    epoch: int
    world_size: int
    batch_size: int
    steps: int  # batches per rank
    first_step: int  # batches per rank before this epoch (the time of step gates)
    strata: list
    shard_order: np.ndarray  # shard ids in this epoch's reading order
    loss_weight: np.ndarray  # float32 per table row (normalised: mean 1 over the epoch's draws)
    funnel: dict = field(default_factory=dict)

    @property
    def draws(self) -> int:
        return self.steps * self.world_size * self.batch_size


@dataclass
class RankPlan:
    """What one rank reads in one epoch: batch t is row t of each (steps, batch_size) array,
    its draws sorted in reading order (shard, then tar order)."""

    epoch: int
    rank: int
    world_size: int
    steps: int
    first_step: int
    shard_paths: list
    rows: np.ndarray  # int64 table rows
    shard: np.ndarray  # int32
    offset: np.ndarray  # int64
    length: np.ndarray  # int32
    label: np.ndarray  # int32
    subset: np.ndarray  # int16 (-1 without subsets)
    weight: np.ndarray  # float32 loss weight (0 where a step gate holds the sample back)
    columns: dict  # "score.column" -> float32


class Planner:
    """Plans epochs of one split for a given world size; cheap to ask for steps of any epoch."""

    def __init__(self, table: SampleTable, config: SamplerConfig, world_size: int = 1):
        if world_size < 1:
            raise WvError("--world-size must be at least 1")
        self.table, self.config, self.world_size = table, config, world_size
        self._steps: dict[int, int] = {}
        self._fingerprint: str | None = None
        self.check_subsets()

    def data_fingerprint(self) -> str:
        """A hash of the metadata the plans are made from (a resume state must match it)."""
        if self._fingerprint is None:
            table = self.table
            digest = hashlib.blake2b(digest_size=8)
            digest.update("\n".join(table.shard_names).encode())
            for array in (table.shard_start, table.label, table.keep, table.subset, table.draw_weight, *table.scores.values()):
                if array is not None:
                    digest.update(np.ascontiguousarray(array).data)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    # -- selection -----------------------------------------------------------------------------
    def check_subsets(self) -> None:
        table, config = self.table, self.config
        if table.subset is None:
            return
        present = np.unique(table.subset[table.subset >= 0])
        top = int(present.max()) if present.size else -1
        count = max(table.subset_count or 0, top + 1)  # the subsets the split made (some may be empty)
        for flag, values in (("--subset-weights", config.subset_weight_list), ("--batch-mix", config.batch_mix_list)):
            if values is not None and top >= len(values):
                raise WvError(f"{config.subsets} has subset {top} but {flag} gives only {len(values)} value(s)")
            if values is not None and len(values) > count:
                raise WvError(f"{flag} gives {len(values)} values but {config.subsets} has {count} subsets (0..{count - 1})")
        named = {s for _, subsets in config.curriculum_stages.stages for s in subsets} if config.curriculum_stages else set()
        if named and max(named) >= count:
            raise WvError(f"--curriculum names subset {max(named)} but {config.subsets} has {count} subsets (0..{count - 1})")

    def selected(self, epoch: int) -> tuple[np.ndarray, dict]:
        """Which rows this epoch may draw, and how many each step of selection left."""
        table, config = self.table, self.config
        mask = np.ones(table.size, dtype=bool) if table.keep is None else table.keep.copy()
        funnel = {"samples": table.size, "after_selection": int(mask.sum())}
        if table.subset is not None:
            subsets = config.curriculum_stages.subsets(epoch) if config.curriculum_stages else np.unique(table.subset[table.subset >= 0])
            funnel["without_subset"] = int((mask & (table.subset < 0)).sum())
            mask &= np.isin(table.subset, np.asarray(subsets, dtype=np.int16))
            funnel["after_curriculum"] = int(mask.sum())
        for gate in self.config.gate_list:
            if gate.unit == "epoch":
                mask &= gate.passes(table.scores[gate.column], epoch)
        if any(g.unit == "epoch" for g in config.gate_list):
            funnel["after_gates"] = int(mask.sum())
        funnel["pool"] = int(mask.sum())
        return mask, funnel

    def steps(self, epoch: int) -> int:
        """Batches per rank in this epoch (the same on every rank)."""
        if epoch not in self._steps:
            pool = self.selected(epoch)[1]["pool"]
            self._steps[epoch] = self.steps_for(pool, epoch)
        return self._steps[epoch]

    def steps_for(self, pool: int, epoch: int) -> int:
        if pool == 0:
            raise WvError(f"epoch {epoch} selects no samples; check the selection, the curriculum stage and the gates (see `wv stream`)")
        size = self.config.epoch_size or pool
        per_step = self.world_size * self.config.batch_size
        steps = -(-size // per_step) if self.config.rounding == "pad" else size // per_step
        if steps == 0:
            raise WvError(
                f"epoch {epoch} has {size} draws, fewer than one batch on each of {self.world_size} rank(s) ({per_step}); use --rounding pad, a smaller --batch-size or a larger --epoch-size"
            )
        return steps

    def first_step(self, epoch: int) -> int:
        """Batches per rank before this epoch (the clock of gates over steps)."""
        if self.epoch_independent():
            return epoch * self.steps(0) if epoch else 0
        return sum(self.steps(e) for e in range(epoch))

    def epoch_independent(self) -> bool:
        return not self.config.curriculum_stages and not any(g.unit == "epoch" for g in self.config.gate_list)

    # -- the draw ------------------------------------------------------------------------------
    def plan(self, epoch: int) -> EpochPlan:
        mask, funnel = self.selected(epoch)
        steps = self.steps_for(funnel["pool"], epoch)
        self._steps[epoch] = steps
        strata = self.strata(mask)
        generator = rng(self.config, epoch, DRAW)
        for stratum in strata:
            total = steps * self.world_size * stratum.share
            weights = self.weights(stratum.rows, "draw")
            expected = capped(weights, total, self.config.max_repeat, stratum.name, epoch)  # refuses weights that are all 0
            stratum.target = total * weights / weights.sum()
            stratum.counts = systematic_counts(expected, generator)
        order = rng(self.config, epoch, SHARDS).permutation(self.table.shards).astype(np.int32)
        return EpochPlan(epoch, self.world_size, self.config.batch_size, steps, self.first_step(epoch), strata, order, self.loss_weights(strata), funnel)

    def strata(self, mask: np.ndarray) -> list:
        rows = np.flatnonzero(mask)
        mix = self.config.batch_mix_list
        if mix is None:
            return [Stratum("all", self.config.batch_size, rows)]
        subset = self.table.subset[rows]
        active = [bool((subset == s).any()) for s in range(len(mix))]
        shares = split_shares(mix, active, self.config.batch_size)
        return [Stratum(f"subset {s}", share, rows[subset == s]) for s, share in enumerate(shares) if share > 0]

    def weights(self, rows: np.ndarray, realised_as: str) -> np.ndarray:
        """The product of the weight factors the config realises as `realised_as` (draw | loss)."""
        config, table = self.config, self.table
        weights = np.ones(rows.shape[0], dtype=np.float64)
        if table.draw_weight is not None and realised_as == "draw":
            weights *= table.draw_weight[rows]
        if config.class_balance == realised_as:
            labels = table.label[rows]
            per_class = np.bincount(labels)
            weights *= rows.shape[0] / per_class[labels]
        if config.subset_weight_list is not None and config.subset_weights_as == realised_as:
            weights *= np.asarray(config.subset_weight_list, dtype=np.float64)[table.subset[rows]]
        if config.weight_column and config.weight_column_as == realised_as:
            values = table.scores[config.weight_column][rows].astype(np.float64)
            if (values < 0).any() or np.isinf(values).any():
                raise WvError(f"--weight-column {config.weight_column} has negative or infinite values; weights must be 0 or more")
            weights *= np.where(np.isnan(values), 1.0, values)
        return weights

    def loss_weights(self, strata: list) -> np.ndarray:
        """A loss weight per table row, normalised so that its mean over the epoch's draws is 1."""
        weight = np.zeros(self.table.size, dtype=np.float32)
        mass = draws = 0.0
        for stratum in strata:
            w = self.weights(stratum.rows, "loss")
            weight[stratum.rows] = w
            mass += float((w * stratum.counts).sum())
            draws += float(stratum.counts.sum())
        if mass == 0:
            raise WvError("every sample drawn this epoch has loss weight 0; check --weight-column and --subset-weights")
        return weight * np.float32(draws / mass)

    # -- one rank's batches ---------------------------------------------------------------------
    def rank_rows(self, plan: EpochPlan, rank: int) -> np.ndarray:
        """(steps, batch_size) table rows of `rank`, each batch in reading order."""
        if not 0 <= rank < plan.world_size:
            raise WvError(f"rank {rank} is outside the world of {plan.world_size}")
        window = max(1, (self.config.shuffle_window or ROOT_WINDOW) // plan.batch_size)
        generator = rng(self.config, plan.epoch, DEAL, rank)
        parts = []
        for stratum in plan.strata:
            if stratum.sequence is None:
                stratum.sequence = shard_ordered(self.table.shard_id, stratum.rows, stratum.counts, plan.shard_order)
            piece = rank_piece(*stratum.sequence, rank * plan.steps * stratum.share, plan.steps * stratum.share)
            parts.append(deal(piece, plan.steps, stratum.share, window, generator))
        return np.sort(np.hstack(parts), axis=1)

    def rank_plan(self, plan: EpochPlan, rank: int) -> RankPlan:
        rows = self.rank_rows(plan, rank)
        table = self.table
        weight = plan.loss_weight[rows]
        times = plan.first_step + np.arange(plan.steps)[:, None]
        for gate in self.config.gate_list:
            if gate.unit == "step":
                weight = weight * gate.passes(table.scores[gate.column][rows], times)
        subset = table.subset[rows] if table.subset is not None else np.full(rows.shape, -1, dtype=np.int16)
        return RankPlan(
            plan.epoch,
            rank,
            plan.world_size,
            plan.steps,
            plan.first_step,
            table.shard_paths,
            rows,
            table.shard_id[rows],
            table.offset[rows],
            table.length[rows],
            table.label[rows],
            subset,
            weight.astype(np.float32),
            {c: table.scores[c][rows] for c in self.config.columns},
        )


def capped(weights: np.ndarray, total: int, cap: int, name: str, epoch: int) -> np.ndarray:
    """Expected draws proportional to weights, summing to total, none above cap (water-filling:
    samples over the cap are held at it and the rest is shared by the others in proportion)."""
    positive = weights > 0
    if total > cap * int(positive.sum()):
        raise WvError(
            f"epoch {epoch} needs {total} draws from {int(positive.sum())} sample(s) with weight ({name}), more than "
            f"--max-repeat {cap} each allows; raise --max-repeat, lower --epoch-size or use --rounding trim"
        )
    expected = np.zeros_like(weights)
    free = positive.copy()
    while free.any():
        remaining = total - cap * int((positive & ~free).sum())
        expected[free] = remaining * weights[free] / weights[free].sum()
        over = free & (expected > cap + 1e-9)
        if not over.any():
            break
        expected[over] = cap
        free &= ~over
    return expected


def systematic_counts(expected: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """Whole draws per sample: floor or ceil of its expectation, summing exactly to the total.

    Systematic sampling (points u, u+1, u+2 ... on the cumulative expectations) over a random
    order of the samples, so which samples get the extra draw is random and unbiased."""
    total = int(round(expected.sum()))
    order = generator.permutation(expected.shape[0])
    cumulative = np.cumsum(expected[order])
    cumulative *= total / cumulative[-1]
    u = 1.0 - generator.random()  # in (0, 1]
    points = np.maximum(np.floor(cumulative - u + 1.0), 0).astype(np.int64)
    counts = np.empty(expected.shape[0], dtype=np.int64)
    counts[order] = np.diff(points, prepend=0)
    return counts


def shard_ordered(shard_id: np.ndarray, rows: np.ndarray, counts: np.ndarray, shard_order: np.ndarray):
    """The drawn rows in reading order: shards in `shard_order`, tar order inside a shard."""
    drawn = counts > 0
    rows, counts = rows[drawn], counts[drawn]
    position = np.empty(shard_order.shape[0], dtype=np.int64)
    position[shard_order] = np.arange(shard_order.shape[0])
    order = np.argsort(position[shard_id[rows]], kind="stable")  # rows ascend, so tar order is kept
    return rows[order], counts[order]


def rank_piece(rows: np.ndarray, counts: np.ndarray, start: int, size: int) -> np.ndarray:
    """Draws start .. start+size of the sequence where row i appears counts[i] times in a row."""
    ends = np.cumsum(counts)
    first = int(np.searchsorted(ends, start, side="right"))
    last = int(np.searchsorted(ends, start + size - 1, side="right"))
    piece = np.repeat(rows[first : last + 1], counts[first : last + 1])
    skip = start - (int(ends[first] - counts[first]))
    return piece[skip : skip + size]


def deal(piece: np.ndarray, steps: int, share: int, window: int, generator: np.random.Generator) -> np.ndarray:
    """Deal a rank's draws (reading order) into (steps, share): window by window, a random order of
    the window's samples, copies kept together, dealt round-robin into the window's batches."""
    n = piece.shape[0]
    new_sample = np.ones(n, dtype=bool)
    new_sample[1:] = piece[1:] != piece[:-1]
    keys = generator.random(int(new_sample.sum()))[np.cumsum(new_sample) - 1]
    window_of = np.arange(n) // (window * share)
    order = np.lexsort((np.arange(n), keys, window_of))
    first_batch = window_of[order] * window
    in_window = np.arange(n) - first_batch * share
    batches_in_window = np.minimum(window, steps - first_batch)
    batch = first_batch + in_window % batches_in_window
    dealt = piece[order][np.argsort(batch, kind="stable")]
    return dealt.reshape(steps, share)
