import click

from wv.cli.common import finish, json_option


@click.command("eval")
@click.option("--shards", required=True, metavar="ROOT|URLS", help="A dataset root (its --split, val by default) or webdataset shards.")
@click.option("--checkpoint", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="A `wv train` checkpoint; repeat it for an ensemble (the models' probabilities averaged over the same crops).")
@click.option("--crops", type=click.Choice(["1", "10", "144"]), default="1", show_default=True,
              help="1: centre crop; 10: corners + centre and mirrors; 144: 4 scales x 3 squares x 6 crops x 2 mirrors.")
@click.option("--split", type=click.Choice(["train", "val"]), default="val", show_default=True)
@click.option("--out", default=None, help="Folder for eval.json and per_class.csv (default: beside the checkpoint, eval-NCROPcrop/).")
@click.option("--batch-size", default=64, show_default=True, help="Images per forward pass (each with all its crops).")
@click.option("--workers", default=2, show_default=True, help="Loader worker processes.")
@click.option("--device", default="auto", show_default=True)
@click.option("--show-classes", default=5, show_default=True, help="Worst classes listed in the summary (all are in the CSV).")
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

    figures = eval_checkpoint(list(checkpoint), shards, crops=int(crops), split=split, out=out, batch_size=batch_size,
                              workers=workers, device=device)
    if "paths" not in figures:  # not rank 0 of a torchrun launch
        return
    worst = sorted(figures["per_class"], key=lambda c: c["top1"])[:show_classes]
    lines = [f"model {i + 1} {m['checkpoint']}: top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}" for i, m in enumerate(figures.get("models", []))]
    what = f"ensemble of {len(lines)}, " if lines else ""
    lines += [f"{what}{figures['n']:,} images, {figures['crops']} crop(s): top-1 {figures['top1']:.4f}, top-5 {figures['top5']:.4f}",
              f"{figures['classes']} classes; lowest top-1:"]
    lines += [f"  {c['label']:>5} {c['synset']} {c['name'][:30]:<30} n {c['n']:>6}  top-1 {c['top1']:.3f}" for c in worst]
    lines.append(f"wrote {figures['paths']['json']}, {figures['paths']['csv']}")
    finish(f"wv eval: {' + '.join(checkpoint)} on {shards}", {k: v for k, v in figures.items() if k != "per_class"}, as_json, lines)
