"""Schedules that change what the sampler feeds over training: curriculum stages and confidence gates.

    curriculum   "0:0;3:0,1;6:0,1,2"   from epoch 0 subset 0, from epoch 3 subsets 0 and 1, from 6 all three
    schedule     "0.5"  or  "0.5@0,0@10"   a value, or points VALUE@TIME joined by straight lines (held
                 constant before the first point and after the last)
    gate         "confidence.p_label >= 0.5@0,0@10"            a score column compared with a schedule
                 "confidence.p_label >= 0.5@0,0@20000 steps"   ... whose time is in steps, not epochs
    list         "128,64,64" (per-subset batch mix), "1,0.5,0.5" (per-subset weights)

Every parser raises WvError with one sentence that names the bad spec.
"""

import operator
import re
from dataclasses import dataclass

import numpy as np

from wv.errors import WvError

COLUMN = re.compile(r"^[A-Za-z_][\w-]*\.[A-Za-z_]\w*$")
GATE = re.compile(r"^\s*(\S+?)\s*(>=|<=|>|<)\s*(.+?)\s*$")
UNITS = {"epoch": "epoch", "epochs": "epoch", "step": "step", "steps": "step"}
OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def parse_column(text: str, what: str) -> str:
    """A qualified score column, SCORE.COLUMN (ROOT/scores/SCORE/*.parquet, column COLUMN)."""
    text = text.strip()
    if not COLUMN.match(text):
        raise WvError(f"{what} {text!r} must name a score column as SCORE.COLUMN, e.g. confidence.p_label")
    return text


def parse_numbers(text: str, what: str, kind=float) -> list:
    try:
        values = [kind(part) for part in text.split(",")]
    except ValueError:
        raise WvError(f"{what} {text!r} must be a comma-separated list of numbers, e.g. 1,0.5,0.5") from None
    if not values or any(v < 0 for v in values) or not all(np.isfinite(values)):
        raise WvError(f"{what} {text!r} must list finite numbers that are 0 or more")
    return values


@dataclass(frozen=True)
class Curriculum:
    """Stages (first epoch, subsets trained on from that epoch), sorted by epoch; the first starts at 0."""

    stages: tuple

    @classmethod
    def parse(cls, spec: str) -> "Curriculum":
        stages = []
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            epoch, colon, subsets = part.partition(":")
            try:
                stage = (int(epoch), tuple(sorted({int(s) for s in subsets.split(",")})))
            except ValueError:
                stage = None
            if not colon or stage is None or stage[0] < 0 or min(stage[1]) < 0:
                raise WvError(f"curriculum stage {part!r} must be EPOCH:SUBSET,SUBSET..., e.g. 3:0,1 (a full spec: 0:0;3:0,1;6:0,1,2)")
            stages.append(stage)
        epochs = [epoch for epoch, _ in stages]
        if not stages or epochs[0] != 0 or epochs != sorted(set(epochs)):
            raise WvError(f"curriculum {spec!r} must start at epoch 0 and list its stages in increasing epochs, e.g. 0:0;3:0,1;6:0,1,2")
        return cls(tuple(stages))

    def subsets(self, epoch: int) -> tuple:
        """The subsets trained on in this epoch."""
        return [subsets for start, subsets in self.stages if start <= epoch][-1]

    def stage(self, epoch: int) -> int:
        return sum(start <= epoch for start, _ in self.stages) - 1


@dataclass(frozen=True)
class Schedule:
    """A value over time: piecewise linear through (time, value) points, constant outside them."""

    points: tuple

    @classmethod
    def parse(cls, spec: str, what: str = "schedule") -> "Schedule":
        points = []
        for part in spec.split(","):
            value, at, time = part.strip().partition("@")
            try:
                point = (float(time) if at else 0.0, float(value))
            except ValueError:
                raise WvError(f"{what} {spec!r} must be a number or points VALUE@TIME, e.g. 0.5@0,0@10") from None
            points.append(point)
        times = [t for t, _ in points]
        if times != sorted(set(times)) or any(t < 0 for t in times) or not all(np.isfinite([v for _, v in points])):
            raise WvError(f"{what} {spec!r} must give its points in increasing time from 0, e.g. 0.5@0,0@10")
        return cls(tuple(points))

    def __call__(self, time):
        """The value at `time` (a number, or an array of times)."""
        times, values = zip(*self.points)
        return np.interp(time, times, values)


@dataclass(frozen=True)
class Gate:
    """Keep a sample only while SCORE.COLUMN OP threshold(time); a missing score passes.

    Gates over epochs filter the epoch's draw (gated samples are never read); gates over steps are
    applied per batch as a zero loss weight (the gated-backprop recipe: the sample is seen but its
    gradient is dropped), since the draw of an epoch is fixed before it starts.
    """

    column: str
    op: str
    schedule: Schedule
    unit: str = "epoch"
    text: str = ""

    @classmethod
    def parse(cls, spec: str) -> "Gate":
        match = GATE.match(spec)
        if not match:
            raise WvError(f"gate {spec!r} must read SCORE.COLUMN >= SCHEDULE, e.g. 'confidence.p_label >= 0.5@0,0@10'")
        column, op, rest = match.groups()
        column = parse_column(column, "gate column")
        words = rest.split()
        unit = "epoch"
        if len(words) > 1 and words[-1].lower() in UNITS:
            unit, rest = UNITS[words[-1].lower()], " ".join(words[:-1])
        if " " in rest.strip():
            raise WvError(f"gate {spec!r}: after the comparison give a schedule and optionally 'epochs' or 'steps', e.g. 0.5@0,0@10 epochs")
        return cls(column, op, Schedule.parse(rest, f"gate schedule in {spec!r}"), unit, spec.strip())

    def threshold(self, time):
        return self.schedule(time)

    def passes(self, values: np.ndarray, time) -> np.ndarray:
        """Which values pass the gate at `time` (broadcast against values); NaN, a missing score, passes."""
        with np.errstate(invalid="ignore"):
            return OPERATORS[self.op](values, self.threshold(time)) | np.isnan(values)


def split_shares(shares: list[int], active: list[bool], total: int) -> list[int]:
    """Give the shares of inactive subsets to the active ones in proportion (largest remainders), summing to total."""
    base = np.array([s if a else 0 for s, a in zip(shares, active)], dtype=float)
    if base.sum() == 0:
        base = np.array([1.0 if a else 0.0 for a in active])
    exact = base * total / base.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()
