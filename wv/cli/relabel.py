import click

from wv.cli.common import finish, json_option, options_from
from wv.curate.relabel_options import RelabelOptions


@click.command()
@click.argument("root", type=click.Path())
@options_from(RelabelOptions, "models", "min_confidence")
@click.option("--name", default="pseudo", show_default=True, help="Write ROOT/scores/NAME.")
@options_from(RelabelOptions, "split", "batch_size", "loader_workers", "device")
@click.option("--overwrite", is_flag=True, help="Replace pseudo-labels made with other models or options.")
@options_from(RelabelOptions, "seed")
@json_option
def relabel(root, name, overwrite, as_json, **values):
    """Pseudo-labels: the class trained models are sure of, to train on instead of the web label.

    Every image of the split goes through the --model checkpoints (several: their probabilities
    averaged). Writes ROOT/scores/NAME/{shard}.parquet: label (the most probable class where its
    probability is at least --min-confidence, else null), predicted, probability, p_label (of the
    web label) and changed (a pseudo-label other than the web label). Train on them with
    `wv train --labels NAME.label` (the web label where label is null); see them with `wv audit
    --relabel NAME`. The models must have been trained on this root's classes. A re-run skips the
    shards already done; under torchrun every rank takes its own shards.

    \b
    Example:
      wv relabel ROOT --model runs/r50/checkpoint.pt --min-confidence 0.9
      wv relabel ROOT --model runs/r50/checkpoint.pt --model runs/d121/checkpoint.pt --name pseudo2
      wv train --shards ROOT --labels pseudo.label --out runs/r50-pseudo
    """
    from wv.curate.relabel import relabel as run_relabel

    figures = run_relabel(root, RelabelOptions(**values), name=name, overwrite=overwrite)
    rank = f" (rank {figures['rank']} of {figures['world_size']})" if figures["world_size"] > 1 else ""
    averaged = f" ({len(figures['models'])} models, probabilities averaged)" if len(figures["models"]) > 1 else ""
    finish(
        f"wv relabel: {root}{rank}",
        figures,
        as_json,
        [
            f"{figures['model']}{averaged} over {figures['classes']} classes on {figures['device']}",
            f"labelled {figures['samples']} images in {figures['shards_written']} shard(s), {figures['shards_skipped']} already done, {figures['seconds']} s",
            f"written now: {figures['pseudo_labelled']} with probability >= {figures['min_confidence']}, {figures['changed']} of them differ from the web label",
            f"scores: {figures['paths']['scores']} (label, predicted, probability, p_label, changed)",
            f"next: wv train --shards {root} --labels {figures['name']}.label",
        ],
    )
