"""`wv score NAME ROOT`: per-sample scores written as sidecars (ROOT/scores/NAME/{shard}.parquet)."""

import click

from wv.cli import LazyGroup

SCORERS = {
    "lda": "wv.cli.score_text:lda",
    "keywords": "wv.cli.score_text:keywords",
    "density": "wv.cli.score_image:density",
    "confidence": "wv.cli.score_image:confidence",
    "noise": "wv.cli.score_noise:noise",
    "labelissues": "wv.cli.score_noise:labelissues",
    "duplicates": "wv.cli.score_duplicates:duplicates",
}


@click.group(cls=LazyGroup, lazy_commands=SCORERS)
def score():
    """Score every sample of a dataset root; each score is a sidecar beside the shards.

    \b
    Example:
      wv score lda ROOT --topics 500
    """
