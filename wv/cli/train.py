import click

from wv.cli.common import finish, json_option, options_from
from wv.cli.sampler_options import sampler_config, sampler_options
from wv.train.options import TrainOptions

# the training loop's options, the same for `wv pretrain`
LOOP_FIELDS = (
    "epochs",
    "lr",
    "lr_schedule",
    "lr_step",
    "lr_step_unit",
    "lr_gamma",
    "warmup_steps",
    "head_lr_mult",
    "freeze_body_epochs",
    "momentum",
    "weight_decay",
    "accum_steps",
    "workers",
    "device",
    "precision",
    "checkpoint_every",
    "log_every",
)


@click.command()
@click.option("--shards", required=True, metavar="ROOT|URLS", help="A dataset root, or webdataset shards (a .tar, a glob, a {000..009} pattern).")
@options_from(
    TrainOptions,
    "val",
    "out",
    "arch",
    "width",
    "image_size",
    "num_classes",
    *LOOP_FIELDS,
    "soft_label",
    "soft_threshold",
    "backprop_gate",
    "topic_head",
    "topic_weight",
    "topic_loss",
    "init",
    "resume",
)
@sampler_options
@json_option
def train(shards, as_json, **options):
    """Train a classifier on the stream of a dataset root or plain shards; alone, or under torchrun.

    The sampler options are `wv stream`'s: selection, curriculum, class balance, gates, weights.
    Under torchrun every rank takes the same number of batches (gloo on CPU, NCCL on GPU), and
    gradients are all-reduced once per optimizer step. A checkpoint (model, optimizer, stream
    position) is written atomically at each epoch end and every --checkpoint-every steps;
    --resume carries on into exactly the batches an uninterrupted run would have seen. --init
    starts a new run (any image size, class list, sampler options) from another run's weights or a
    state-dict file: matching tensors load, the class head starts afresh. A backprop gate on a fresh
    model gives no gradient: start it once the model has learnt (as below), not at epoch 0.

    \b
    Example:
      wv train --shards ROOT --val ROOT --arch resnet50 --epochs 18 --out runs/r50
      wv train --shards ROOT --curriculum '0:0;3:0,1;6:0,1,2' --subset-weights 1,0.5,0.5 --out runs/cnet
      wv train --shards ROOT --arch tinycnn --image-size 32 --epochs 3 --batch-size 64 --out runs/tiny
      wv train --shards ROOT --backprop-gate '0@0,0@2,0.5@3,0@10' --out runs/gated
      wv train --shards ROOT --arch seresnet50 --init seresnet50.pth --head-lr-mult 10 --out runs/se50
      wv train --shards ROOT --init runs/r50/checkpoint.pt --image-size 320 --lr-schedule cosine --warmup-steps 500 --out runs/r50-320
      torchrun --nproc_per_node 8 -m wv train --shards ROOT --val ROOT --class-balance loss --out runs/ddp
      wv train --shards ROOT --out runs/r50 --resume
    """
    from wv.train.trainer import train as run_train

    sampler = sampler_config(options)
    summary = run_train(shards, TrainOptions(**options), sampler)
    if summary["rank"]:  # under torchrun, rank 0 reports for all
        return
    val = f", val top-1 {summary['val_top1']:.3f}, top-5 {summary['val_top5']:.3f}" if summary["val_top1"] is not None else ""
    loss = f"loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}" if summary["final_loss"] is not None else "nothing left to train"
    init = summary["init"]
    finish(
        f"wv train: {shards}, world size {summary['world_size']}",
        summary,
        as_json,
        [
            f"{summary['arch']} on {summary['device']}: {summary['epochs']} epochs, {summary['steps_per_rank']} batches per rank this run, "
            f"{summary['optimizer_steps']} optimizer steps in all, {summary['images_per_s']:,} images/s",
            f"{loss}{val}",
            *([f"initialised from {init['path']}: {init['loaded']} tensors loaded, {init['reinitialised']} re-initialised, {init['ignored']} ignored"] if init else []),
            f"checkpoint: {summary['paths']['checkpoint']}",
            f"log: {summary['paths']['log']}" + (f", curves: {summary['paths']['curves']}" if "curves" in summary["paths"] else ""),
        ],
    )
