import os

import click

from wv.cli.common import finish, json_option


@click.command()
@click.argument("out", type=click.Path(file_okay=False), default="demo-out")
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True)
@click.option("--classes", default=20, show_default=True)
@click.option("--per-class", default=100, show_default=True)
@click.option("--epochs", default=6, show_default=True, help="Epochs of each of the two training runs.")
@json_option
def demo(out, workers, classes, per_class, epochs, as_json):
    """Run the whole pipeline on a synthetic dataset in OUT (re-running resumes).

    synth, shard build, verify, score lda and keywords, a probe model, embed, density, curriculum
    split, confidence, select, audit, a curriculum training run and its 10-crop evaluation.

    \b
    Example:
      wv demo demo-out
      wv demo demo-small --classes 6 --per-class 40 --epochs 2
    """
    from wv.demo import run_demo

    figures = run_demo(out, workers=workers, classes=classes, per_class=per_class, epochs=epochs, say=click.echo)
    lines = [f"dataset root: {figures['root']}",
             f"audit report: {figures['report']}",
             f"curriculum run: {figures['train']['paths']['checkpoint']}; 10-crop val top-1 {figures['eval']['top1']:.3f}",
             "next: open the report in a browser; wv shard info " + figures["root"]]
    finish("wv demo: done", figures, as_json, lines)
    if not figures["verify"]["ok"]:
        raise SystemExit(1)
