"""What every command shares: one-sentence errors with exit 2, the --json flag, the summary."""

import json
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
