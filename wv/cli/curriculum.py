import click

from wv.cli.common import WvGroup, finish, json_option


@click.group(cls=WvGroup)
def curriculum():
    """Curriculum subsets: per class, from clean (0) to very noisy."""


@curriculum.command("split")
@click.argument("root", type=click.Path())
@click.option("--by", default="density", show_default=True, metavar="SCORE[:COLUMN]",
              help="The score to split by: density (CurriculumNet k-means) or any score column (per-class quantiles).")
@click.option("--subsets", default=3, show_default=True, help="How many subsets (CurriculumNet: 3).")
@click.option("--method", type=click.Choice(["auto", "kmeans", "quantile"]), default="auto", show_default=True,
              help="auto: k-means for a density column, quantiles otherwise.")
@click.option("--lower-is-cleaner", is_flag=True, help="For quantiles: low values are clean (default: high values are).")
@click.option("--name", default="curriculum", show_default=True, help="Write ROOT/scores/NAME (the stream reads `curriculum`).")
@click.option("--split", "split_name", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace subsets made with other options.")
@click.option("--seed", default=0, show_default=True, help="k-means seed (the reference's random_state).")
@json_option
def split(root, by, subsets, method, lower_is_cleaner, name, split_name, overwrite, seed, as_json):
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

    figures = curriculum_split(root, by=by, subsets=subsets, method=method, higher_is_cleaner=not lower_is_cleaner, name=name,
                               split=split_name, seed=seed, overwrite=overwrite)
    shares = ", ".join(f"{k}: {v}" for k, v in sorted(figures["per_subset"].items()))
    finish(f"wv curriculum split: {root}", figures, as_json, [
        f"{figures['by']} by {figures['method']}: {figures['classes']} classes, {figures['samples']} samples",
        f"samples per subset: {shares}",
        f"classes kept whole (too few samples or values): {figures['unsplit_classes']}; samples without a value: {figures['missing_values']}",
        f"shards written {figures['shards_written']}, already complete {figures['shards_skipped']}: {figures['paths']['curriculum']}",
    ])
