import click

from wv.cli.common import finish, json_option, options_from
from wv.train.options import EvalOptions


@click.command("eval")
@click.option("--shards", required=True, metavar="ROOT|URLS", help="A dataset root (its --split, val by default) or webdataset shards.")
@click.option(
    "--checkpoint", required=True, multiple=True, type=click.Path(dir_okay=False), help="A `wv train` checkpoint; repeat it for an ensemble (the models' probabilities averaged over the same crops)."
)
@options_from(EvalOptions)
@json_option
def eval_(shards, checkpoint, crops, split, out, batch_size, workers, device, show_classes, as_json):
    """Top-1 / top-5 accuracy of a checkpoint, single- or multi-crop, with a per-class table.

    Under torchrun the shards are split over the ranks and the counts summed. With several
    --checkpoint, each model and their ensemble (the mean of their probabilities) are reported;
    eval.json and per_class.csv hold the ensemble's figures, eval.json each model's too.

    \b
    Example:
      wv eval --shards ROOT --checkpoint runs/r50/checkpoint.pt
      wv eval --shards ROOT --checkpoint runs/r50/checkpoint.pt --crops 10 --json
      wv eval --shards 'val/val-{000000..000049}.tar' --checkpoint runs/r50/checkpoint.pt --crops 144
      wv eval --shards ROOT --checkpoint runs/r50/checkpoint.pt --checkpoint runs/d121/checkpoint.pt --crops 10
    """
    from wv.train.evaluate import eval_checkpoint

    figures = eval_checkpoint(list(checkpoint), shards, crops=crops, split=split, out=out, batch_size=batch_size, workers=workers, device=device)
    if "paths" not in figures:  # not rank 0 of a torchrun launch
        return
    worst = sorted(figures["per_class"], key=lambda c: c["top1"])[:show_classes]
    lines = [f"model {i + 1} {m['checkpoint']}: top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}" for i, m in enumerate(figures.get("models", []))]
    what = f"ensemble of {len(lines)}, " if lines else ""
    lines += [f"{what}{figures['n']:,} images, {figures['crops']} crop(s): top-1 {figures['top1']:.4f}, top-5 {figures['top5']:.4f}", f"{figures['classes']} classes; lowest top-1:"]
    lines += [f"  {c['label']:>5} {c['synset']} {c['name'][:30]:<30} n {c['n']:>6}  top-1 {c['top1']:.3f}" for c in worst]
    lines.append(f"wrote {figures['paths']['json']}, {figures['paths']['csv']}")
    finish(f"wv eval: {' + '.join(checkpoint)} on {shards}", {k: v for k, v in figures.items() if k != "per_class"}, as_json, lines)
