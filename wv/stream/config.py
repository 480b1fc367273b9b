"""What a sampler feeds: one frozen, validated config shared by `wv stream`, `wv train` and the library.

The CLI builds it from the shared option group (wv.cli.sampler_options); library users build it
directly. Everything that decides the sequence of batches is in here, so its fingerprint is what a
resume state is checked against.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property

from wv.errors import WvError
from wv.options import SPLITS, opt
from wv.runtime import check_seed
from wv.stream.schedule import Curriculum, Gate, parse_column, parse_numbers

REALISE = ("draw", "loss")
ROOT_WINDOW = 10000  # draws shuffled together on a dataset root
URL_BUFFER = 1000  # samples held by each worker's shuffle buffer on plain URLs


@dataclass(frozen=True)
class SamplerConfig:
    """Selection, weighting, curriculum, gates and epoch layout of a stream; each field's help is its
    `wv stream --help` line. Gates are "SCORE.COLUMN >= SCHEDULE [epochs|steps]" (wv.stream.schedule.Gate)."""

    batch_size: int = opt(256, "Samples per batch on each rank.")
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "Seed of every random choice (draw, order, shuffle, augmentation).")
    selection: str = opt("auto", "auto: apply ROOT/scores/selection (from `wv select`) if present; none; or another NAME under ROOT/scores.")
    subsets: str = opt("curriculum.subset", "Column holding each sample's curriculum subset (0 clean, 1 noisy, 2 very noisy).", metavar="SCORE.COLUMN")
    curriculum: str | None = opt(None, "Subsets trained on from each epoch on, e.g. '0:0;3:0,1;6:0,1,2'.", metavar="SPEC")
    subset_weights: str | None = opt(None, "Weight of each subset, e.g. 1,0.5,0.5 (CurriculumNet).", metavar="W0,W1,..")
    subset_weights_as: str = opt("loss", "draw: subsets drawn in proportion; loss: a per-sample loss weight in the batch.", choices=REALISE)
    class_balance: str = opt("off", "w_i = N / N_class(i): every class drawn equally often (draw) or weighing the same in the loss (loss).", choices=("off", *REALISE))
    weight_column: str | None = opt(None, "A score used as a per-sample weight (missing values count 1).", metavar="SCORE.COLUMN")
    weight_column_as: str = opt("loss", choices=REALISE)
    labels: str | None = opt(None, "Train on this score column's class where it has one (e.g. pseudo.label from `wv relabel`), on the web label where it is null.", metavar="SCORE.COLUMN")
    max_repeat: int = opt(8, "Most draws of one sample in an epoch; the excess of capped samples goes to the others.")
    gates: tuple = opt(
        help="Keep samples while SCORE.COLUMN >= SCHEDULE, e.g. 'confidence.p_label >= 0.5@0,0@10' (epochs: gated samples are not drawn) or '... >= 0.5@0,0@20000 steps' (loss weight 0). Repeatable.",
        factory=tuple,
        flag="--gate",
        multiple=True,
        metavar="GATE",
    )
    batch_mix: str | None = opt(
        None,
        "Samples of each subset in every batch, e.g. 128,64,64 (adds up to --batch-size); subsets not yet in the curriculum give their share to the active ones in proportion.",
        metavar="N0,N1,..",
    )
    epoch_size: int | None = opt(None, "Draws per epoch over all ranks (default: the samples selected in the epoch).")
    rounding: str = opt("pad", "Round an epoch up (pad: a few extra draws) or down (trim) to whole batches on every rank.", choices=("pad", "trim"))
    shuffle_window: int | None = opt(
        None, f"Draws shuffled together (root, default {ROOT_WINDOW}; larger mixes more, smaller keeps fewer shards in use at once), or each worker's shuffle buffer (URLs, default {URL_BUFFER})."
    )
    columns: tuple = opt(help="Score column carried in every batch (repeatable).", factory=tuple, flag="--column", multiple=True, metavar="SCORE.COLUMN")

    def __post_init__(self):
        object.__setattr__(self, "gates", tuple(self.gates))
        object.__setattr__(self, "columns", tuple(self.columns))
        self.validate()

    def validate(self) -> None:
        if self.batch_size < 1:
            raise WvError("--batch-size must be at least 1")
        check_seed(self.seed)
        if self.split not in SPLITS:
            raise WvError("--split must be train or val")
        if self.class_balance not in ("off", *REALISE):
            raise WvError("--class-balance must be off, draw or loss")
        if self.subset_weights_as not in REALISE or self.weight_column_as not in REALISE:
            raise WvError("weights are realised as draw (how often a sample is drawn) or loss (a weight in the batch)")
        if self.max_repeat < 1:
            raise WvError("--max-repeat must be at least 1")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise WvError("--epoch-size must be at least 1")
        if self.rounding not in ("pad", "trim"):
            raise WvError("--rounding must be pad or trim")
        if self.shuffle_window is not None and self.shuffle_window < 1:
            raise WvError("--shuffle-window must be at least 1")
        if not self.selection or "/" in self.selection:
            raise WvError("--selection must be auto, none or the name of a score folder under ROOT/scores")
        parse_column(self.subsets, "--subsets")
        for column in self.columns:
            parse_column(column, "--column")
        if self.weight_column:
            parse_column(self.weight_column, "--weight-column")
        if self.labels:
            parse_column(self.labels, "--labels")
        self.curriculum_stages, self.gate_list, self.subset_weight_list  # parse now: bad specs fail early
        mix = self.batch_mix_list
        if mix is not None and sum(mix) != self.batch_size:
            raise WvError(f"--batch-mix {self.batch_mix} adds up to {sum(mix)}, not the batch size {self.batch_size}")

    # -- parsed forms ------------------------------------------------------------------------------
    @cached_property
    def curriculum_stages(self) -> Curriculum | None:
        return Curriculum.parse(self.curriculum) if self.curriculum else None

    @cached_property
    def gate_list(self) -> tuple:
        return tuple(Gate.parse(g) for g in self.gates)

    @cached_property
    def subset_weight_list(self) -> list | None:
        return parse_numbers(self.subset_weights, "--subset-weights") if self.subset_weights else None

    @cached_property
    def batch_mix_list(self) -> list | None:
        if not self.batch_mix:
            return None
        mix = parse_numbers(self.batch_mix, "--batch-mix", kind=int)
        if sum(mix) == 0:
            raise WvError(f"--batch-mix {self.batch_mix} must give some subset a share of the batch")
        return mix

    @property
    def uses_subsets(self) -> bool:
        return bool(self.curriculum or self.subset_weights or self.batch_mix)

    @property
    def needs_root(self) -> list[str]:
        """The options that need a dataset root (manifest and sidecars), for a clear error on plain URLs."""
        flags = {
            "--curriculum": self.curriculum,
            "--subset-weights": self.subset_weights,
            "--batch-mix": self.batch_mix,
            "--class-balance": self.class_balance != "off",
            "--weight-column": self.weight_column,
            "--gate": self.gates,
            "--column": self.columns,
            "--labels": self.labels,
            "--selection": self.selection not in ("auto", "none"),
        }
        return [flag for flag, used in flags.items() if used]

    def score_columns(self) -> list[str]:
        """Every score column the plan reads (gates, weight column, carried columns), without repeats."""
        wanted = [g.column for g in self.gate_list] + ([self.weight_column] if self.weight_column else []) + list(self.columns)
        return list(dict.fromkeys(wanted))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def fingerprint(self) -> str:
        """A short hash of everything that decides the batches (a resume state must match it)."""
        settings = self.to_dict()
        if settings["labels"] is None:  # the hash of a config without --labels is the one it had before the option existed
            del settings["labels"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
