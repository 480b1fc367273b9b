"""`wv score duplicates`: exact and near-duplicate images, and train/val leaks (see wv/curate/duplicates.py)."""

import click

from wv.cli.common import finish, json_option, options_from, worker_options
from wv.curate.duplicates_options import DuplicateOptions


@click.command()
@click.argument("root", type=click.Path())
@options_from(DuplicateOptions, "features", "val_features", "threshold", "against")
@click.option("--name", default="duplicates", show_default=True, help="Write ROOT/scores/NAME.")
@options_from(DuplicateOptions, "mode", "exact_max", "probes")
@click.option("--memory-gb", default=4.0, show_default=True, help="Memory for the features searched at once (half of it).")
@click.option("--overwrite", is_flag=True, help="Replace a duplicates score made with other options.")
@options_from(DuplicateOptions, "seed")
@worker_options(tasks="shards hashed")
@json_option
def duplicates(root, features, val_features, threshold, against, name, mode, exact_max, probes, memory_gb, overwrite, seed, workers, executor, ray_address, as_json):
    """Exact and near-duplicate images in train and in val, and the train samples that leak into val.

    Exact: the same bytes, or the same 64-bit DCT hash of the pixels at 32 x 32 grayscale (a
    recompressed or resized copy is exact). Near: cosine similarity of the --features at or above
    --threshold, within a split. Each group keeps one representative (the largest image, then the
    lowest key); the others are `redundant`. Every sample also gets its nearest sample in the other
    split (key, similarity) and, with --against, in another dataset; `leaks` marks a sample with an
    exact or near copy there. Writes ROOT/scores/NAME/{shard}.parquet for train and val shards.
    Both splits need features: `wv embed ROOT --split val --name clip-val` with the model of
    train's, then --val-features clip-val.

    \b
    Example:
      wv embed ROOT --model ViT-B-32 --weights ~/models/vit-b-32.bin --name clip
      wv embed ROOT --model ViT-B-32 --weights ~/models/vit-b-32.bin --name clip-val --split val
      wv score duplicates ROOT --features clip --val-features clip-val --against ~/data/imagenet-val
      wv select ROOT --drop "duplicates.redundant" --drop "duplicates.leaks"
    """
    from wv.curate.duplicates import score_duplicates

    opts = DuplicateOptions(features=features, val_features=val_features, threshold=threshold, against=against, mode=mode, exact_max=exact_max, probes=probes, seed=seed)
    f = score_duplicates(root, opts, name=name, memory_gb=memory_gb, overwrite=overwrite, workers=workers, executor=executor, ray_address=ray_address)
    lines = [f"features {f['features']} ({f['dim']}-d), threshold {f['threshold']}: {f['samples']['train']} train, {f['samples']['val']} val, {f['samples']['against']} against"]
    for split in ("train", "val"):
        if split in f:
            s = f[split]
            lines.append(
                f"{split}: {s['in_exact_groups']} in {s['exact_groups']} exact groups, {s['in_near_groups']} in {s['near_groups']} "
                f"near groups (largest {s['largest_group']}); {s['redundant']} redundant, {s['leaks']} leak"
            )
    if "mode" in f:
        lines.append(f"search {f['mode']} ({f['cells']} cell(s)); shards hashed now {f['shards_hashed']}")
    lines += [
        f"shards written {f['shards_written']}, already complete {f['shards_skipped']}, {f['seconds']} s",
        f"scores: {f['paths']['scores']}",
        f'next: wv select {root} --drop "{name}.redundant" --drop "{name}.leaks"',
    ]
    finish(f"wv score duplicates: {root}", f, as_json, lines)
