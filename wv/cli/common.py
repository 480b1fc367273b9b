"""What every command shares: one-sentence errors (exit 2 for bad input, 1 for a bug), the --json flag,
the summary."""

import dataclasses
import functools
import json
import os
import sys
import types
import typing

import click

from wv.errors import WvError, first_line
from wv.options import option_default


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class BugError(click.ClickException):
    """An unexpected exception, shown as one sentence with exit status 1."""

    exit_code = 1

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class WvGroup(click.Group):
    """A group that turns library WvErrors into one-sentence errors with exit status 2, and any other
    exception into one sentence with exit status 1 (the traceback with `wv --debug` or WV_DEBUG=1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WvError as error:
            raise UserError(str(error)) from None
        except click.UsageError as error:  # click's own is four lines (usage, hint, blank, error): one here
            where = error.ctx.command_path if error.ctx is not None else "wv"
            raise UserError(f"{error.format_message().rstrip('.')} (see `{where} --help`)") from None
        except OverflowError as error:  # a number given on the command line beyond what numpy, polars or C take
            raise UserError(f"a number given to {command_name(ctx)} is too large ({first_line(error)}); use a smaller value") from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `wv models | head`: the reader left; end quietly, as other Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except Exception as error:
            if debugging(ctx):
                raise
            raise BugError(bug_sentence(command_name(ctx), error)) from None


DEBUG = "wv.debug"  # ctx.meta key set by the root group's --debug


def debugging(ctx) -> bool:
    return bool(ctx.meta.get(DEBUG)) or os.environ.get("WV_DEBUG", "").strip() not in ("", "0")


def command_name(ctx) -> str:
    """`wv shard build`: the names from the root group down to the subcommand that ran."""
    names = [ctx.invoked_subcommand] if ctx.invoked_subcommand else []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return " ".join(["wv", *names])


def bug_sentence(command: str, error: Exception) -> str:
    """One line: the command, the exception's type and last line, the file (an OSError's) and any notes."""
    lines = str(error).strip().splitlines()
    message = lines[-1].strip().removeprefix(f"{type(error).__name__}: ") if lines else ""
    where = [f"file {error.filename}"] if isinstance(error, OSError) and error.filename else []
    where += [note.strip() for note in getattr(error, "__notes__", ()) if note.strip()]
    detail = f"{type(error).__name__}: {message}" if message else type(error).__name__
    at = f" ({'; '.join(where)})" if where else ""
    return f"{command} failed on an unexpected error, {detail}{at}; this is a bug in wv, run it again with `wv --debug` or WV_DEBUG=1 for the traceback"


json_option = click.option("--json", "as_json", is_flag=True, help="Print the run's figures as one JSON object on the last line of stdout.")


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
    fn = checking_workers(fn)
    fn = click.option("--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray instance).")(fn)
    fn = click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        callback=check_executor,
        help="local: a process pool here. ray: Ray tasks on a cluster (ROOT on shared storage).",
    )(fn)
    default = (os.cpu_count() or 1) if workers is None else workers
    return click.option("--workers", default=default, show_default=True, help=f"Parallel {tasks}.")(fn)


def checking_workers(fn):
    """The command, checking --workers and --executor before it runs (so before anything is written)."""

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        from wv.parallel import check_workers

        check_workers(kwargs["workers"], kwargs["executor"])
        return fn(*args, **kwargs)

    return checked


def options_from(cls, *names: str):
    """The click options of dataclass `cls`'s fields `names` (all its fields when none are named), in
    that order, each with the default, help and settings declared once on the field (wv.options.opt).
    The command receives each value under the field's name."""
    hints = typing.get_type_hints(cls)
    chosen = {f.name: f for f in dataclasses.fields(cls)}
    options = [field_option(chosen[name], hints[name]) for name in (names or chosen)]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def field_option(f: dataclasses.Field, hint):
    """One field as a click option: a bool is a flag, a None default takes the annotation's int or
    float type, and a default is shown unless it is None, empty or a flag's."""
    settings = dict(f.metadata.get("cli", {}))
    flag = settings.pop("flag", "--" + f.name.replace("_", "-"))
    if "choices" in settings:
        settings["type"] = click.Choice(list(settings.pop("choices")))
    default = option_default(f)
    if default is dataclasses.MISSING:
        settings["required"] = True
    else:
        settings["default"] = default
    if hint is bool:
        settings["is_flag"] = True
    elif default is None and "type" not in settings:
        scalar = [t for t in typing.get_args(hint) if t is not type(None)] if isinstance(hint, types.UnionType) else [hint]
        if scalar and scalar[0] in (int, float):
            settings["type"] = scalar[0]
    if default not in (None, (), "", dataclasses.MISSING) and hint is not bool:
        settings.setdefault("show_default", True)
    return click.option(flag, f.name, help=f.metadata.get("help"), **settings)
