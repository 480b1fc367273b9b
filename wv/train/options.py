"""What `wv train` takes besides the sampler's options (wv.stream.config.SamplerConfig): each field's
default and --help line, declared once. Free of torch, so that the command line is built without it;
wv.train.trainer.check_options checks a TrainOptions before a run.

The defaults follow the reference recipe's optimiser but not its length or batch size; README.md
("Recipe") says where they differ, and tests/test_options.py checks its numbers against these fields.
"""

from dataclasses import dataclass

from wv.options import SPLITS, opt


@dataclass(frozen=True)
class TrainOptions:
    out: str = opt("runs/train", "Run folder: checkpoint.pt, log.jsonl, curves.png, train.json.")
    arch: str = opt("resnet50", "resnet18/34/50, densenet121, or tinycnn (CPU-sized).")
    width: int | None = opt(None, "tinycnn's channel width (32).")
    image_size: int | None = opt(None, "Training crop size (default: 224; tinycnn 64).")
    num_classes: int | None = opt(None, "Outputs, for plain shards (a dataset root has its class list).")
    epochs: int = opt(18, "Epochs to train (the reference trained 20).")
    lr: float = opt(0.01, "SGD learning rate (per rank's batch; scale it with the world size yourself).")
    momentum: float = opt(0.9, "SGD momentum.")
    weight_decay: float = opt(1e-4, "SGD weight decay (L2).")
    lr_step: int = opt(6, "Epochs between learning-rate decays.")
    lr_gamma: float = opt(0.1, "Learning-rate factor at each decay.")
    accum_steps: int = opt(1, "Batches per optimizer step (gradient accumulation; DDP syncs once per step).")
    workers: int = opt(4, "Loader worker processes per rank.")
    device: str = opt("auto", "auto (this rank's GPU when there is one), cpu, cuda.")
    precision: str = opt("auto", "auto: bf16 autocast on GPU, fp32 on CPU.", choices=("auto", "fp32", "bf16"))
    val: str | None = opt(None, "Validation shards, evaluated after every epoch (a root: its val split).", metavar="ROOT|URLS")
    val_batch_size: int = opt(64, "Images per forward pass of the validation after each epoch.")
    checkpoint_every: int = opt(0, "Also checkpoint every N optimizer steps (0: at epoch ends only).")
    log_every: int = opt(10, "Optimizer steps between log records.")
    soft_label: str | None = opt(None, "Soft labels: loss weight 1 at or above --soft-threshold, score/threshold below "
                                       "(e.g. lda.similarity).", metavar="SCORE.COLUMN")
    soft_threshold: float = opt(0.5, "The score at and above which a soft label weighs 1 (see --soft-label).")
    backprop_gate: str | None = opt(None, "Gated backprop: samples whose top-1 probability is below the gate give no gradient, "
                                          "e.g. '0.5@0,0@10' (epochs) or '0.5@0,0@20000 steps'.", metavar="SCHEDULE")
    topic_head: str | None = opt(None, "Two-head network: also regress each sample's topic distribution from ROOT/features/NAME "
                                       "(lda).", metavar="NAME")
    topic_weight: float = opt(0.25, "Loss weight of the topic head (the class head gets the rest).")
    resume: bool = opt(False, "Continue the run in --out from its checkpoint.pt.")


@dataclass(frozen=True)
class EvalOptions:
    """What `wv eval` takes besides its inputs (--shards, --checkpoint)."""

    crops: int = opt(1, "1: centre crop; 10: corners + centre and mirrors; 144: 4 scales x 3 squares x 6 crops x 2 mirrors.",
                     choices=(1, 10, 144))
    split: str = opt("val", choices=SPLITS)
    out: str | None = opt(None, "Folder for eval.json and per_class.csv (default: beside the checkpoint, eval-NCROPcrop/).")
    batch_size: int = opt(64, "Images per forward pass (each with all its crops).")
    workers: int = opt(2, "Loader worker processes.")
    device: str = opt("auto", "auto (this rank's GPU when there is one), cpu, cuda.")
    show_classes: int = opt(5, "Worst classes listed in the summary (all are in the CSV).")
