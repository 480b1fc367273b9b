import click

from wv.cli.common import WvGroup, finish, json_option, options_from
from wv.curate.options import CurriculumOptions


@click.group(cls=WvGroup)
def curriculum():
    """Curriculum subsets: per class, from clean (0) to very noisy."""


@curriculum.command("split")
@click.argument("root", type=click.Path())
@options_from(CurriculumOptions, "by", "subsets", "method", "lower_is_cleaner")
@click.option("--name", default="curriculum", show_default=True, help="Write ROOT/scores/NAME (the stream reads `curriculum`).")
@options_from(CurriculumOptions, "split")
@click.option("--overwrite", is_flag=True, help="Replace subsets made with other options.")
@options_from(CurriculumOptions, "seed")
@json_option
def split(root, name, overwrite, as_json, **options):
    """Split every class into subsets 0 (clean) .. SUBSETS-1 (very noisy).

    --by density: k-means on the class's densities, the densest cluster clean (CurriculumNet).
    Any other score: the class's quantiles of the column. A class with fewer samples or distinct
    values than subsets is kept whole in subset 0. Writes ROOT/scores/NAME/{shard}.parquet:
    __key__, subset.

    \b
    Example:
      wv curriculum split ROOT --by density --subsets 3
      wv curriculum split ROOT --by confidence:p_label --name curriculum-conf
    """
    from wv.curate.curriculum import curriculum_split

    figures = curriculum_split(root, CurriculumOptions(**options), name=name, overwrite=overwrite)
    shares = ", ".join(f"{k}: {v}" for k, v in sorted(figures["per_subset"].items()))
    finish(
        f"wv curriculum split: {root}",
        figures,
        as_json,
        [
            f"{figures['by']} by {figures['method']}: {figures['classes']} classes, {figures['samples']} samples",
            f"samples per subset: {shares}",
            f"classes kept whole (too few samples or values): {figures['unsplit_classes']}; samples without a value: {figures['missing_values']}",
            f"shards written {figures['shards_written']}, already complete {figures['shards_skipped']}: {figures['paths']['curriculum']}",
        ],
    )
