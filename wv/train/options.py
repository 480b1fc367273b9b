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
    arch: str = opt("resnet50", "resnet18/34/50, densenet121 (torchvision), tinycnn (CPU-sized), or any timm model name (`wv models` lists them; timm:NAME for timm's model of a name above).")
    width: int | None = opt(None, "tinycnn's channel width (32).")
    image_size: int | None = opt(None, "Training crop size (default: 224; tinycnn 64; a timm model its own).")
    num_classes: int | None = opt(None, "Outputs, for plain shards (a dataset root has its class list).")
    epochs: int = opt(18, "Epochs to train (the reference trained 20).")
    lr: float = opt(0.01, "SGD learning rate (per rank's batch; scale it with the world size yourself).")
    momentum: float = opt(0.9, "SGD momentum.")
    weight_decay: float = opt(1e-4, "SGD weight decay (L2).")
    lr_schedule: str = opt("step", "step: times --lr-gamma every --lr-step; cosine: down to 0 over --epochs, set at every step.", choices=("step", "cosine"))
    lr_step: int = opt(6, "Epochs (or optimizer steps, see --lr-step-unit) between learning-rate decays.")
    lr_step_unit: str = opt("epoch", "What --lr-step counts: epochs, or optimizer steps.", choices=("epoch", "step"))
    lr_gamma: float = opt(0.1, "Learning-rate factor at each decay.")
    warmup_steps: int = opt(0, "Linear learning-rate warm-up over the first N optimizer steps (either schedule).")
    head_lr_mult: float = opt(1.0, "The class head's learning rate as a multiple of the body's (--lr).")
    freeze_body_epochs: int = opt(0, "Train only the head for the first N epochs (the body's weights get no update).")
    accum_steps: int = opt(1, "Batches per optimizer step (gradient accumulation; DDP syncs once per step).")
    workers: int = opt(4, "Loader worker processes per rank.")
    device: str = opt("auto", "auto (this rank's GPU when there is one), cpu, cuda.")
    precision: str = opt("auto", "auto: bf16 autocast on GPU, fp32 on CPU.", choices=("auto", "fp32", "bf16"))
    val: str | None = opt(None, "Validation shards, evaluated after every epoch (a root: its val split).", metavar="ROOT|URLS")
    val_batch_size: int = opt(64, "Images per forward pass of the validation after each epoch.")
    checkpoint_every: int = opt(0, "Also checkpoint every N optimizer steps (0: at epoch ends only).")
    log_every: int = opt(10, "Optimizer steps between log records.")
    soft_label: str | None = opt(None, "Soft labels: loss weight 1 at or above --soft-threshold, score/threshold below (e.g. lda.similarity).", metavar="SCORE.COLUMN")
    soft_threshold: float = opt(0.5, "The score at and above which a soft label weighs 1 (see --soft-label).")
    backprop_gate: str | None = opt(
        None, "Gated backprop: samples whose top-1 probability is below the gate give no gradient, e.g. '0.5@0,0@10' (epochs) or '0.5@0,0@20000 steps'.", metavar="SCHEDULE"
    )
    topic_head: str | None = opt(None, "Two-head network: also regress each sample's topic distribution from ROOT/features/NAME (lda).", metavar="NAME")
    topic_weight: float = opt(0.25, "Loss weight of the topic head (the class head gets the rest).")
    topic_loss: str = opt(
        "sigmoid",
        "Loss of the topic head. sigmoid (gombru 2017): each topic's probability is the target of "
        "a binary cross-entropy on its own sigmoid output; softmax: one softmax over the topics, "
        "cross-entropy against the whole distribution (KL up to a constant).",
        choices=("sigmoid", "softmax"),
    )
    init: str | None = opt(
        None,
        "Start from these weights: a wv checkpoint or a state-dict file; tensors of matching name and shape load, the class head starts afresh (unless the class list is the same).",
        metavar="PATH",
    )
    resume: bool = opt(False, "Continue the run in --out from its checkpoint.pt.")


PRETRAIN_TASKS = ("keywords", "label-weights", "permutation")


@dataclass(frozen=True)
class PretrainOptions:
    """What `wv pretrain` takes besides TrainOptions and the sampler's options."""

    task: str = opt(
        "keywords",
        "keywords: multi-label over the keyword vocabulary of each image's text (WeChat's WT-set; "
        "`wv score keywords` first); label-weights: soft targets over the classes (LW-set; `wv score lda` "
        "first); permutation: put an image's shuffled tiles back in order (DeepPermNet; no labels needed).",
        choices=PRETRAIN_TASKS,
    )
    keyword_balance: str = opt(
        "draw",
        "keywords: draw: rare keywords drawn more (a sample's draw weight is the mean of "
        "1 / documents-of-keyword over its keywords, each sample capped at --max-repeat draws); "
        "off: every sample with a keyword alike. Samples with no keyword are skipped (never drawn).",
        choices=("draw", "off"),
    )
    holdout: float = opt(0.05, "keywords: share of the samples with keywords held out of training (seeded) for the validation mAP after each epoch; 0: none.")
    grid: int = opt(3, "permutation: tiles per side (3: 9 tiles); --image-size / grid is the tile size.")
    permutations: int = opt(1000, "permutation: distinct permutations drawn from (a seeded set).")
    sinkhorn_iters: int = opt(20, "permutation: row-and-column normalisations of the Sinkhorn layer.")
    temperature: float = opt(1.0, "permutation: the Sinkhorn layer's input is scores / temperature (lower: closer to a hard permutation).")
    tile_features: int = opt(256, "permutation: features per tile (the backbone's output layer, re-initialised by --init).")


@dataclass(frozen=True)
class EvalOptions:
    """What `wv eval` takes besides its inputs (--shards, --checkpoint)."""

    crops: int = opt(1, "1: centre crop; 10: corners + centre and mirrors; 144: 4 scales x 3 squares x 6 crops x 2 mirrors.", choices=(1, 10, 144))
    split: str = opt("val", choices=SPLITS)
    out: str | None = opt(None, "Folder for eval.json and per_class.csv (default: beside the checkpoint, eval-NCROPcrop/).")
    batch_size: int = opt(64, "Images per forward pass (each with all its crops).")
    workers: int = opt(2, "Loader worker processes.")
    device: str = opt("auto", "auto (this rank's GPU when there is one), cpu, cuda.")
    show_classes: int = opt(5, "Worst classes listed in the summary (all are in the CSV).")
