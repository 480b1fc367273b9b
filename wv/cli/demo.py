import os

import click

from wv.cli.common import finish, json_option


@click.command()
@click.argument("out", type=click.Path(file_okay=False), default="demo-out")
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True)
@click.option("--classes", default=20, show_default=True)
@click.option("--per-class", default=100, show_default=True)
@json_option
def demo(out, workers, classes, per_class, as_json):
    """Run the whole pipeline on a synthetic dataset in OUT (re-running resumes).

    \b
    Example:
      wv demo demo-out
    """
    from wv.demo import run_demo

    figures = run_demo(out, workers=workers, classes=classes, per_class=per_class, say=click.echo)
    lines = [f"dataset root: {figures['root']}", "next: wv shard info " + figures["root"]]
    finish("wv demo: done", figures, as_json, lines)
    if not figures["verify"]["ok"]:
        raise SystemExit(1)
