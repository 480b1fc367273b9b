import functools

import click

from wv.cli.common import finish, json_option, options_from
from wv.curate.options import EmbedOptions, LoopOptions


def model_options(fn=None, *, several: bool = False):
    """--model, --weights, --pretrained, --model-config: a wv checkpoint or an open_clip model
    (`several=True`: --model repeatable, for an ensemble of checkpoints)."""
    if fn is None:
        return functools.partial(model_options, several=several)
    fn = click.option(
        "--model-config", "model_config", type=click.Path(dir_okay=False), default=None, help="open_clip config JSON of a custom architecture (its file name, less .json, is the model name)."
    )(fn)
    fn = click.option("--pretrained", default=None, help="open_clip pretrained tag (must already be in the local cache: no downloads).")(fn)
    fn = click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Local open_clip weights file.")(fn)
    repeat = " Repeat it for an ensemble of checkpoints (their probabilities are averaged)." if several else ""
    return click.option("--model", "model", default=None, multiple=several, help=f"A `wv train` checkpoint file, or an open_clip model name such as ViT-B-32.{repeat}")(fn)


loop_options = options_from(LoopOptions)  # --batch-size, --loader-workers, --device


@click.command()
@click.argument("root", type=click.Path())
@model_options
@click.option("--name", default=None, help="Write ROOT/features/NAME (default: clip for open_clip models, model for checkpoints).")
@options_from(EmbedOptions, "split")
@loop_options
@click.option("--overwrite", is_flag=True, help="Replace features made with another model or options.")
@options_from(EmbedOptions, "seed")
@json_option
def embed(root, model, weights, pretrained, model_config, name, split, batch_size, loader_workers, device, overwrite, seed, as_json):
    """Image features per shard: ROOT/features/NAME/{shard}.npy (float16, shard order).

    From an open_clip model (its L2-normalised image embedding) or a `wv train` checkpoint (the
    input of its classifier). Images are decoded from the shards with the model's preprocessing;
    on the GPU when there is one. Under torchrun every rank takes its own shards. A re-run skips
    the shards already done.

    \b
    Example:
      wv embed ROOT --model ViT-B-32 --weights ~/models/vit-b-32-laion2b.bin
      wv embed ROOT --model runs/tiny/checkpoint.pt --name tiny
      torchrun --nproc_per_node 8 -m wv embed ROOT --model ViT-L-14 --pretrained openai
    """
    from wv.curate.embed import embed as run_embed
    from wv.models import ModelSpec

    spec = ModelSpec(model=model, weights=weights, pretrained=pretrained, config=model_config)
    figures = run_embed(root, spec, name=name, split=split, batch_size=batch_size, loader_workers=loader_workers, device=device, overwrite=overwrite, seed=seed)
    rank = f" (rank {figures['rank']} of {figures['world_size']})" if figures["world_size"] > 1 else ""
    finish(
        f"wv embed: {root}{rank}",
        figures,
        as_json,
        [
            f"{figures['kind']} {figures['model']}: {figures['dim']}-d features on {figures['device']}",
            f"embedded {figures['samples']} images in {figures['shards_written']} shard(s), {figures['shards_skipped']} already done, {figures['seconds']} s",
            f"features: {figures['paths']['features']}",
            f"next: wv score density {root} --features {figures['name']}",
        ],
    )
