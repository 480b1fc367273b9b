import os

import click

from wv.cli.common import finish, json_option


@click.command()
@click.argument("out", type=click.Path(file_okay=False), default="demo-out")
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True)
@click.option("--classes", default=20, show_default=True)
@click.option("--per-class", default=100, show_default=True)
@click.option("--epochs", default=6, show_default=True, help="Epochs of each of the two training runs.")
@click.option("--skip-uncurated", is_flag=True, help="Skip the uncurated comparison run (the demo then takes one training run less).")
@json_option
def demo(out, workers, classes, per_class, epochs, skip_uncurated, as_json):
    """Run the whole pipeline on a synthetic dataset in OUT (re-running resumes).

    synth, shard build, verify, score lda and keywords, a probe model, embed, density, curriculum
    split, confidence, select, audit, a curriculum training run and its 10-crop evaluation, and the
    same budget trained on everything (uncurated) to show what the curation gained.

    \b
    Example:
      wv demo demo-out
      wv demo demo-small --classes 6 --per-class 40 --epochs 2
    """
    from wv.demo import run_demo

    figures = run_demo(out, workers=workers, classes=classes, per_class=per_class, epochs=epochs, say=click.echo, uncurated=not skip_uncurated)
    gain = figures["gain"]
    versus = f"uncurated {gain['uncurated_val_top1']:.3f} ({gain['gain']:+.3f})" if gain["uncurated_val_top1"] is not None else f"uncurated run skipped: {gain['skipped']}"
    lines = [
        f"dataset root: {figures['root']}",
        f"audit report: {figures['report']}   val top-1: curated {gain['curated_val_top1']:.3f}, {versus}",
        f"curriculum run: {figures['train']['paths']['checkpoint']}; 10-crop val top-1 {figures['eval']['top1']:.3f}",
        "next: open the report in a browser; wv shard info " + figures["root"],
    ]
    finish("wv demo: done", figures, as_json, lines)
    if not figures["verify"]["ok"]:
        raise SystemExit(1)
