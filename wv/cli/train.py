import click

from wv.cli.common import finish, json_option
from wv.cli.sampler_options import sampler_config, sampler_options


@click.command()
@click.option("--shards", required=True, metavar="ROOT|URLS", help="A dataset root, or webdataset shards (a .tar, a glob, a {000..009} pattern).")
@click.option("--val", default=None, metavar="ROOT|URLS", help="Validation shards, evaluated after every epoch (a root: its val split).")
@click.option("--out", default="runs/train", show_default=True, help="Run folder: checkpoint.pt, log.jsonl, curves.png, train.json.")
@click.option("--arch", default="resnet50", show_default=True, help="resnet18/34/50, densenet121, or tinycnn (CPU-sized).")
@click.option("--width", type=int, default=None, help="tinycnn's channel width (32).")
@click.option("--image-size", type=int, default=None, help="Training crop size (default: 224; tinycnn 64).")
@click.option("--num-classes", type=int, default=None, help="Outputs, for plain shards (a dataset root has its class list).")
@click.option("--epochs", default=18, show_default=True)
@click.option("--lr", default=0.01, show_default=True, help="SGD learning rate (per rank's batch; scale it with the world size yourself).")
@click.option("--lr-step", default=6, show_default=True, help="Epochs between learning-rate decays.")
@click.option("--lr-gamma", default=0.1, show_default=True, help="Learning-rate factor at each decay.")
@click.option("--momentum", default=0.9, show_default=True)
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--accum-steps", default=1, show_default=True, help="Batches per optimizer step (gradient accumulation; DDP syncs once per step).")
@click.option("--workers", default=4, show_default=True, help="Loader worker processes per rank.")
@click.option("--device", default="auto", show_default=True, help="auto (this rank's GPU when there is one), cpu, cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on GPU, fp32 on CPU.")
@click.option("--checkpoint-every", default=0, show_default=True, help="Also checkpoint every N optimizer steps (0: at epoch ends only).")
@click.option("--log-every", default=10, show_default=True, help="Optimizer steps between log records.")
@click.option("--soft-label", default=None, metavar="SCORE.COLUMN",
              help="Soft labels: loss weight 1 at or above --soft-threshold, score/threshold below (e.g. lda.similarity).")
@click.option("--soft-threshold", default=0.5, show_default=True)
@click.option("--backprop-gate", default=None, metavar="SCHEDULE",
              help="Gated backprop: samples whose top-1 probability is below the gate give no gradient, e.g. '0.5@0,0@10' "
                   "(epochs) or '0.5@0,0@20000 steps'.")
@click.option("--topic-head", default=None, metavar="NAME",
              help="Two-head network: also regress each sample's topic distribution from ROOT/features/NAME (lda).")
@click.option("--topic-weight", default=0.25, show_default=True, help="Loss weight of the topic head (the class head gets the rest).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.pt.")
@sampler_options
@json_option
def train(shards, as_json, **options):
    """Train a classifier on the stream of a dataset root or plain shards; alone, or under torchrun.

    The sampler options are `wv stream`'s: selection, curriculum, class balance, gates, weights.
    Under torchrun every rank takes the same number of batches (gloo on CPU, NCCL on GPU), and
    gradients are all-reduced once per optimizer step. A checkpoint (model, optimizer, stream
    position) is written atomically at each epoch end and every --checkpoint-every steps;
    --resume carries on into exactly the batches an uninterrupted run would have seen.

    \b
    Example:
      wv train --shards ROOT --val ROOT --arch resnet50 --epochs 18 --out runs/r50
      wv train --shards ROOT --curriculum '0:0;3:0,1;6:0,1,2' --subset-weights 1,0.5,0.5 --out runs/cnet
      wv train --shards ROOT --arch tinycnn --image-size 32 --epochs 3 --batch-size 64 --out runs/tiny
      torchrun --nproc_per_node 8 -m wv train --shards ROOT --val ROOT --class-balance loss --out runs/ddp
      wv train --shards ROOT --out runs/r50 --resume
    """
    from wv.train.trainer import TrainOptions
    from wv.train.trainer import train as run_train

    sampler = sampler_config(options)
    summary = run_train(shards, TrainOptions(**options), sampler)
    if summary["rank"]:  # under torchrun, rank 0 reports for all
        return
    val = f", val top-1 {summary['val_top1']:.3f}, top-5 {summary['val_top5']:.3f}" if summary["val_top1"] is not None else ""
    loss = f"loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}" if summary["final_loss"] is not None else "nothing left to train"
    finish(f"wv train: {shards}, world size {summary['world_size']}", summary, as_json, [
        f"{summary['arch']} on {summary['device']}: {summary['epochs']} epochs, {summary['steps_per_rank']} batches per rank this run, "
        f"{summary['optimizer_steps']} optimizer steps in all, {summary['images_per_s']:,} images/s",
        f"{loss}{val}",
        f"checkpoint: {summary['paths']['checkpoint']}",
        f"log: {summary['paths']['log']}" + (f", curves: {summary['paths']['curves']}" if "curves" in summary["paths"] else ""),
    ])
