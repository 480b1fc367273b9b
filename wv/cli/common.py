"""What every command shares: one-sentence errors with exit 2, the --json flag, the summary."""

import functools
import json
import os
import sys

import click

from wv.errors import WvError


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class WvGroup(click.Group):
    """A group that turns library WvErrors into one-sentence errors with exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WvError as error:
            raise UserError(str(error)) from None


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the run's figures as one JSON object on the last line of stdout."
)


def finish(title: str, figures: dict, as_json: bool, lines=()) -> None:
    """Print the end-of-run summary (stdout) and, with --json, the figures as the last stdout line."""
    click.echo(title)
    for line in lines:
        click.echo(f"  {line}")
    if as_json:
        sys.stdout.flush()
        click.echo(json.dumps(figures, default=str))


def check_executor(ctx, param, value: str) -> str:
    """--executor ray without Ray installed: one sentence before the command writes anything."""
    if value == "ray":
        from wv.parallel import require_ray

        try:
            require_ray()
        except WvError as error:
            raise UserError(str(error)) from None
    return value


def worker_options(fn=None, *, workers: int | None = None, tasks: str = "shard tasks"):
    """--workers (default: every CPU), --executor and --ray-address, for commands that map their work
    with wv.parallel.Workers; `@worker_options(workers=1, tasks=...)` for another default and help."""
    if fn is None:
        return functools.partial(worker_options, workers=workers, tasks=tasks)
    fn = click.option("--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray instance).")(fn)
    fn = click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, callback=check_executor,
                      help="local: a process pool here. ray: Ray tasks on a cluster (ROOT on shared storage).")(fn)
    default = (os.cpu_count() or 1) if workers is None else workers
    return click.option("--workers", default=default, show_default=True, help=f"Parallel {tasks}.")(fn)
