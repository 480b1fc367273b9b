"""`wv --help` and `wv <verb> --help` are built without the heavy libraries: the command modules and the
options dataclasses they read (wv/*/options.py, wv/synth_options.py) import neither torch, polars nor
PIL. Checked in a fresh interpreter, where nothing else has imported them yet."""

import json
import subprocess
import sys

from wv.cli import COMMANDS

HEAVY = ("torch", "polars", "PIL", "webdataset")
CLI_MODULES = sorted({target.split(":")[0] for target in COMMANDS.values()} | {"wv.cli", "wv.cli.score_text", "wv.cli.score_image"})


def heavy_modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.splitlines()[-1])


def test_the_command_modules_import_no_heavy_library():
    code = "\n".join(f"import {module}" for module in CLI_MODULES)
    assert heavy_modules_after(code) == []


def test_building_every_command_imports_no_heavy_library():
    """What `wv --help` does: list the commands and load each one, down the groups."""
    code = """
import click
from wv.cli import main
def load(group, ctx):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            load(command, ctx)
load(main, click.Context(main))
"""
    assert heavy_modules_after(code) == []


def test_the_probe_sees_a_heavy_import():
    """Not vacuous: a module that does import polars is caught."""
    assert heavy_modules_after("import wv.curate.select") == ["polars"]
