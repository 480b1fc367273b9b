"""The `wv` command line: a click group whose subcommands live one module per verb.

Subcommands are imported only when invoked, so `wv shard info` never pays for importing torch.
"""

import importlib

import click

from wv import __version__
from wv.cli.common import DEBUG, WvGroup

COMMANDS = {
    "synth": "wv.cli.synth:synth",
    "shard": "wv.cli.shard:shard",
    "demo": "wv.cli.demo:demo",
    "score": "wv.cli.score:score",
    "select": "wv.cli.select:select",
    "audit": "wv.cli.audit:audit",
    "stream": "wv.cli.stream:stream",
    "embed": "wv.cli.embed:embed",
    "curriculum": "wv.cli.curriculum:curriculum",
    "train": "wv.cli.train:train",
    "pretrain": "wv.cli.pretrain:pretrain",
    "eval": "wv.cli.eval:eval_",
    "models": "wv.cli.models:models",
    "relabel": "wv.cli.relabel:relabel",
}


class LazyGroup(WvGroup):
    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module_name, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wv")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error (also WV_DEBUG=1).")
@click.pass_context
def main(ctx, debug):
    """wv: curate noisy web-image datasets (WebVision) into scored, streamable shards.

    \b
    Example, the whole pipeline on a synthetic dataset:
      wv demo demo-out
    """
    ctx.meta[DEBUG] = debug
