import click

from wv.cli.common import finish, json_option


@click.command()
@click.argument("pattern", required=False)
@json_option
def models(pattern, as_json):
    """List the architectures `wv train --arch` takes: wv's own and timm's, with their default input size.

    PATTERN filters the names with shell wildcards ('*resnest*', 'efficientnet_b?'). Every model
    starts from random weights (nothing is downloaded); pretrained weights come from a file through
    `wv train --init`.

    \b
    Example:
      wv models
      wv models '*resnest*'
      wv models 'inception*' --json
    """
    from wv.models import model_table

    rows = model_table(pattern)
    figures = {"pattern": pattern, "count": len(rows), "models": rows}
    width = max((len(r["name"]) for r in rows), default=0)
    lines = [f"{r['name']:<{width}}  {r['source']:<11}  {r['size']} px" for r in rows] or [f"no architecture matches {pattern!r}"]
    finish(f"wv models{f' {pattern}' if pattern else ''}: {len(rows)} architectures (name, from, default input size)", figures, as_json, lines)
