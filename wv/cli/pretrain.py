import click

from wv.cli.common import finish, json_option, options_from
from wv.cli.sampler_options import sampler_config, sampler_options
from wv.cli.train import LOOP_FIELDS
from wv.train.options import PretrainOptions, TrainOptions

TRAIN_FIELDS = (
    "val",
    "out",
    "arch",
    "width",
    "image_size",
    *LOOP_FIELDS,
    "init",
    "resume",
)


@click.command()
@click.option("--shards", required=True, metavar="ROOT|URLS", help="A dataset root (any task), or webdataset shards (--task permutation).")
@options_from(PretrainOptions, "task", "keyword_balance", "holdout", "grid", "permutations", "sinkhorn_iters", "temperature", "tile_features")
@options_from(TrainOptions, *TRAIN_FIELDS)
@sampler_options
@json_option
def pretrain(shards, as_json, task, keyword_balance, holdout, grid, permutations, sinkhorn_iters, temperature, tile_features, **options):
    """Pre-train a backbone on the web text or the images themselves; `wv train --init` continues from it.

    keywords (WeChat 2020, WT-set): a classifier over the keyword vocabulary of `wv score keywords`,
    trained multi-label: the sum over the vocabulary of each keyword's binary cross-entropy. Draws are
    balanced over keywords (--keyword-balance); samples with no keyword are skipped (never drawn);
    --holdout of the rest is kept out for the mAP after each epoch (each held-out image's keywords
    ranked among the vocabulary, averaged over images).

    label-weights (WeChat 2020, LW-set): soft targets over the classes from scores/label_weights of
    `wv score lda` (each sample's --top-classes most similar classes, weights summing to 1); the loss
    sums each target class's cross-entropy times its weight. A sample LDA could not score keeps its
    web label with weight 1. --val gives top-1 / top-5 against the web labels.

    permutation (DeepPermNet, CVPR 2017): each image is cut into --grid x --grid tiles, shuffled by
    one of --permutations fixed permutations; one CNN embeds each tile, a linear layer maps the joined
    embeddings to a tiles x tiles matrix, a Sinkhorn layer (log space) makes it doubly stochastic, and
    the loss is its cross-entropy against the permutation. Logged per epoch: the share of tiles put
    back right (row argmax on the training batches; with --val, the best assignment on its images).
    Needs no labels: any root or plain shards.

    Every task runs in `wv train`'s loop: the same stream and sampler options, torchrun, AMP,
    accumulation, checkpoints, --resume, log.jsonl, curves.png. The checkpoint is a wv checkpoint of
    the backbone with the task's output layer (keywords, classes or tile features), so that
    `wv train --init RUN/checkpoint.pt` loads the body and starts a new class head.

    \b
    Example:
      wv score keywords ROOT && wv pretrain --task keywords --shards ROOT --arch resnet50 --out runs/wt
      wv score lda ROOT && wv pretrain --task label-weights --shards ROOT --val ROOT --out runs/lw
      wv pretrain --task permutation --shards 'shards/train-{000000..000099}.tar' --grid 3 --out runs/vpl
      torchrun --nproc_per_node 8 -m wv pretrain --task keywords --shards ROOT --out runs/wt-ddp
      wv train --shards ROOT --init runs/wt/checkpoint.pt --out runs/ft
    """
    from wv.train.trainer import train as run_train

    sampler = sampler_config(options)
    settings = PretrainOptions(
        task=task, keyword_balance=keyword_balance, holdout=holdout, grid=grid, permutations=permutations, sinkhorn_iters=sinkhorn_iters, temperature=temperature, tile_features=tile_features
    )
    check_pretrain(settings)
    summary = run_train(shards, TrainOptions(**options), sampler, pretrain=settings)
    if summary["rank"]:  # under torchrun, rank 0 reports for all
        return
    loss = f"loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}" if summary["final_loss"] is not None else "nothing left to train"
    metrics = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in summary.items() if k.endswith(("map", "accuracy", "top1", "top5")) and isinstance(v, float))
    lines = [
        f"{summary['arch']} on {summary['device']}: {summary['epochs']} epochs, {summary['steps_per_rank']} batches per rank this run, "
        f"{summary['optimizer_steps']} optimizer steps in all, {summary['images_per_s']:,} images/s",
        f"{loss}" + (f", {metrics}" if metrics else ""),
    ]
    if task == "keywords":
        lines.append(
            f"{summary['vocabulary']:,} keywords; {summary['samples_with_keywords']:,} samples with keywords "
            f"({summary['held_out']:,} held out), {summary['skipped_without_keyword']:,} without (skipped); balance "
            f"{summary['keyword_balance']}: {summary['capped_at_max_repeat']:,} samples capped at --max-repeat {summary['max_repeat']}"
        )
    lines += [
        f"checkpoint: {summary['paths']['checkpoint']} (continue with `wv train --init`)",
        f"log: {summary['paths']['log']}" + (f", curves: {summary['paths']['curves']}" if "curves" in summary["paths"] else ""),
    ]
    finish(f"wv pretrain --task {task}: {shards}, world size {summary['world_size']}", summary, as_json, lines)


def check_pretrain(settings: PretrainOptions) -> None:
    import math

    from wv.errors import WvError

    if not 0 <= settings.holdout < 1 or not math.isfinite(settings.holdout):
        raise WvError("--holdout must be a share in [0, 1)")
