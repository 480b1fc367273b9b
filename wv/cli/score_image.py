"""`wv score density` and `wv score confidence`: image scores (see wv/curate/density.py, confidence.py)."""

import click

from wv.cli.common import finish, json_option, options_from, worker_options
from wv.cli.embed import loop_options, model_options
from wv.curate.options import ConfidenceOptions, DensityOptions, DensityResources


@click.command()
@click.argument("root", type=click.Path())
@options_from(DensityOptions, "features")
@click.option("--name", default="density", show_default=True, help="Write ROOT/scores/NAME.")
@options_from(DensityOptions, "split", "dim", "quantile", "mode", "exact_max", "anchors")
@options_from(DensityResources)
@click.option("--overwrite", is_flag=True, help="Replace a density score made with other options.")
@options_from(DensityOptions, "seed")
@worker_options(workers=1, tasks="classes, on CPU (1: one process, on the GPU when there is one)")
@json_option
def density(root, features, name, split, dim, quantile, mode, exact_max, anchors, device, memory_gb, overwrite, seed, workers, executor, ray_address, as_json):
    """CurriculumNet density per class: density, delta and the class's cutoff d_c for every sample.

    Per class: PCA to --dim dims, Euclidean distances, d_c = the --quantile of all pairwise
    distances, density = neighbours closer than d_c, delta = the distance to the nearest denser
    sample. Exact without ever holding the N x N matrix (tiles, float32 with float64 where it
    matters); classes over --exact-max samples are approximated from --anchors samples.
    Writes ROOT/scores/NAME/{shard}.parquet: __key__, density, delta, cutoff. Then split into
    curriculum subsets with `wv curriculum split`. One process computes class after class (on the
    GPU when there is one); --workers N (or --executor ray) computes N classes at once on CPU,
    with the same results.

    \b
    Example:
      wv score density ROOT --features clip
      wv score density ROOT --features clip --workers 16 --device cpu
      wv curriculum split ROOT --by density --subsets 3
    """
    from wv.curate.density import score_density

    opts = DensityOptions(features=features, split=split, dim=dim, quantile=quantile, mode=mode, exact_max=exact_max, anchors=anchors, seed=seed)
    figures = score_density(root, opts, name=name, device=device, memory_gb=memory_gb, overwrite=overwrite, workers=workers, executor=executor, ray_address=ray_address)
    finish(
        f"wv score density: {root}",
        figures,
        as_json,
        [
            f"features {figures['features']} ({figures['dim']}-d) on {figures['device']}: {figures['classes']} classes, {figures['samples']} samples",
            f"classes computed now {figures['classes_done']} (exact {figures['exact']}, approximate {figures['approximate']}), "
            f"resumed {figures['classes_resumed']}; largest class {figures['largest_class']}, slowest {figures['slowest_class_seconds']} s",
            f"shards written {figures['shards_written']}, already complete {figures['shards_skipped']}, {figures['seconds']} s",
            f"scores: {figures['paths']['scores']}",
            f"next: wv curriculum split {root} --by {name}",
        ],
    )


@click.command()
@click.argument("root", type=click.Path())
@model_options(several=True)
@options_from(ConfidenceOptions, "templates", "names")
@click.option("--name", default="confidence", show_default=True, help="Write ROOT/scores/NAME.")
@options_from(ConfidenceOptions, "split")
@loop_options
@click.option("--overwrite", is_flag=True, help="Replace a confidence score made with another model or options.")
@options_from(ConfidenceOptions, "seed")
@json_option
def confidence(root, model, weights, pretrained, model_config, templates, names, name, split, batch_size, loader_workers, device, overwrite, seed, as_json):
    """Model confidence: p_label (probability of the labelled class), top1 and p_top1 per sample.

    From a CLIP model, zero-shot over the class names (prompts such as "a photo of a {}."), or
    from a `wv train` checkpoint; several --model checkpoints average their probabilities. Writes ROOT/scores/NAME/{shard}.parquet. A re-run skips the
    shards already done; under torchrun every rank takes its own shards.

    \b
    Example:
      wv score confidence ROOT --model ViT-B-32 --weights ~/models/vit-b-32.bin --class-names imagenet
      wv score confidence ROOT --model runs/r50/checkpoint.pt
      wv score confidence ROOT --model runs/r50/checkpoint.pt --model runs/d121/checkpoint.pt --name ensemble
      wv select ROOT --drop "confidence.p_label < 0.05"
    """
    from wv.curate.confidence import score_confidence
    from wv.models import ModelSpec

    specs = [ModelSpec(model=m, weights=weights, pretrained=pretrained, config=model_config) for m in model or (None,)]
    figures = score_confidence(
        root, specs, name=name, split=split, templates=templates, names=names, batch_size=batch_size, loader_workers=loader_workers, device=device, overwrite=overwrite, seed=seed
    )
    rank = f" (rank {figures['rank']} of {figures['world_size']})" if figures["world_size"] > 1 else ""
    finish(
        f"wv score confidence: {root}{rank}",
        figures,
        as_json,
        [
            f"{figures['kind']} {figures['model']}{' (probabilities averaged)' if figures['models'] > 1 else ''} over {figures['classes']} classes on {figures['device']}",
            f"scored {figures['samples']} images in {figures['shards_written']} shard(s), {figures['shards_skipped']} already done, {figures['seconds']} s",
            f"scores: {figures['paths']['scores']} (p_label, top1, p_top1)",
        ],
    )
