"""The sampler option group shared by `wv stream` and `wv train`: one definition, one meaning.

    @click.command()
    @sampler_options
    def train(..., **options):
        config = sampler_config(options)   # pops the sampler's options, returns a SamplerConfig
"""

import click

FIELDS = ("batch_size", "split", "seed", "selection", "subsets", "curriculum", "subset_weights", "subset_weights_as",
          "class_balance", "weight_column", "weight_column_as", "max_repeat", "gates", "batch_mix", "epoch_size",
          "rounding", "shuffle_window", "columns")
REALISED = click.Choice(["draw", "loss"])


def sampler_options(fn):
    """Add the sampler's options to a click command (their names match SamplerConfig's fields)."""
    options = [
        click.option("--batch-size", default=256, show_default=True, help="Samples per batch on each rank."),
        click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True),
        click.option("--selection", default="auto", show_default=True,
                     help="auto: apply ROOT/scores/selection (from `wv select`) if present; none; or another NAME under ROOT/scores."),
        click.option("--subsets", default="curriculum.subset", show_default=True, metavar="SCORE.COLUMN",
                     help="Column holding each sample's curriculum subset (0 clean, 1 noisy, 2 very noisy)."),
        click.option("--curriculum", default=None, metavar="SPEC",
                     help="Subsets trained on from each epoch on, e.g. '0:0;3:0,1;6:0,1,2'."),
        click.option("--subset-weights", default=None, metavar="W0,W1,..",
                     help="Weight of each subset, e.g. 1,0.5,0.5 (CurriculumNet)."),
        click.option("--subset-weights-as", type=REALISED, default="loss", show_default=True,
                     help="draw: subsets drawn in proportion; loss: a per-sample loss weight in the batch."),
        click.option("--class-balance", type=click.Choice(["off", "draw", "loss"]), default="off", show_default=True,
                     help="w_i = N / N_class(i): every class drawn equally often (draw) or weighing the same in the loss (loss)."),
        click.option("--weight-column", default=None, metavar="SCORE.COLUMN",
                     help="A score used as a per-sample weight (missing values count 1)."),
        click.option("--weight-column-as", type=REALISED, default="loss", show_default=True),
        click.option("--max-repeat", default=8, show_default=True,
                     help="Most draws of one sample in an epoch; the excess of capped samples goes to the others."),
        click.option("--gate", "gates", multiple=True, metavar="GATE",
                     help="Keep samples while SCORE.COLUMN >= SCHEDULE, e.g. 'confidence.p_label >= 0.5@0,0@10' "
                          "(epochs: gated samples are not drawn) or '... >= 0.5@0,0@20000 steps' (loss weight 0). Repeatable."),
        click.option("--batch-mix", default=None, metavar="N0,N1,..",
                     help="Samples of each subset in every batch, e.g. 128,64,64 (adds up to --batch-size)."),
        click.option("--epoch-size", type=int, default=None,
                     help="Draws per epoch over all ranks (default: the samples selected in the epoch)."),
        click.option("--rounding", type=click.Choice(["pad", "trim"]), default="pad", show_default=True,
                     help="Round an epoch up (pad: a few extra draws) or down (trim) to whole batches on every rank."),
        click.option("--shuffle-window", type=int, default=None,
                     help="Draws shuffled together (root, default 10000), or each worker's shuffle buffer (URLs, default 1000)."),
        click.option("--column", "columns", multiple=True, metavar="SCORE.COLUMN",
                     help="Score column carried in every batch (repeatable)."),
        click.option("--seed", default=0, show_default=True, help="Seed of every random choice (draw, order, shuffle, augmentation)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def sampler_config(options: dict):
    """Pop the sampler's options out of a command's keyword arguments; return the SamplerConfig."""
    from wv.stream.config import SamplerConfig

    return SamplerConfig(**{name: options.pop(name) for name in FIELDS})
