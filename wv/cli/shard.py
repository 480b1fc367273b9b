import click

from wv.cli.common import WvGroup, finish, json_option, options_from, worker_options
from wv.shards.options import BuildOptions


@click.group(cls=WvGroup)
def shard():
    """Build, check and describe the webdataset shards of a dataset root."""


@shard.command()
@click.argument("webvision_root", type=click.Path())
@click.argument("root", type=click.Path())  # a file as ROOT: the library refuses it in one sentence
@options_from(BuildOptions, "split", "sources", "shard_size", "resize", "quality", "check", "images_dir")
@worker_options
@options_from(BuildOptions, "seed")
@json_option
def build(webvision_root, root, split, sources, shard_size, resize, quality, check, images_dir, workers, executor, ray_address, seed, as_json):
    """Turn a WebVision download (1.0 or 2.0 layout) into webdataset shards under ROOT.

    Writes ROOT/shards/{split}-NNNNNN.tar (KEY.jpg, .cls, .json, .txt per sample), manifest.parquet,
    shards.parquet, rejects.parquet, meta/{shard}.parquet and wv.json. Re-running a killed build
    finishes it without redoing complete shards. ROOT is a new or empty folder, or a root built
    from the same WEBVISION_ROOT, and lies outside it.

    Unusable inputs become rows of rejects.parquet with their reason: list lines that cannot be
    parsed, are absolute or go up (..), or name no google/flickr folder; images that are missing,
    broken, not regular files (FIFOs, devices) or larger than 64 MiB.

    \b
    Example:
      wv shard build /data/webvision ROOT --split train --shard-size 1000 --resize 256
      wv shard build /data/webvision ROOT --split val
      wv shard build /data/webvision ROOT --executor ray --ray-address auto
    """
    from wv.shards.build import build as build_shards

    options = BuildOptions(
        split=split,
        sources=tuple(s.strip() for s in sources.split(",") if s.strip()) if sources else None,
        shard_size=shard_size,
        resize=resize,
        check=check,
        seed=seed,
        images_dir=images_dir,
        quality=quality,
    )
    report = build_shards(webvision_root, root, options, workers=workers, executor=executor, ray_address=ray_address)
    figures = {**vars(report), "paths": {"root": root, "manifest": f"{root}/manifest.parquet", "rejects": f"{root}/rejects.parquet"}}
    rate = report.written / report.seconds if report.seconds else 0.0
    finish(
        f"wv shard build: {split} -> {root}",
        figures,
        as_json,
        [
            f"written {report.written} samples in {report.shards} shards ({report.bytes / 1e6:.1f} MB), rejected {report.rejected}",
            f"shards built now {report.shards_built}, already complete {report.shards_skipped}",
            f"{report.seconds:.1f} s, {rate:.0f} samples/s; see `wv shard info {root}` and {root}/rejects.parquet",
        ],
    )


@shard.command()
@click.argument("root", type=click.Path())
@worker_options
@click.option("--decode/--no-decode", default=True, show_default=True, help="Decode every image (slower, catches corrupt pixels).")
@json_option
def verify(root, workers, executor, ray_address, decode, as_json):
    """Check a dataset root: sha256 of every shard, counts, manifest <-> shards agreement, every sample readable.

    Exits 1 and lists the problems if anything is wrong.

    \b
    Example:
      wv shard verify ROOT
    """
    from wv.shards.verify import verify as verify_root

    result = verify_root(root, workers=workers, decode=decode, executor=executor, ray_address=ray_address)
    lines = [f"{result['shards']} shards, {result['samples']} samples checked"]
    lines += [f"PROBLEM: {p}" for p in result["problems"][:50]]
    if len(result["problems"]) > 50:
        lines.append(f"... and {len(result['problems']) - 50} more")
    finish(f"wv shard verify: {root}: {'OK' if result['ok'] else 'FAILED'}", result, as_json, lines)
    if not result["ok"]:
        raise SystemExit(1)


@shard.command()
@click.argument("root", type=click.Path())
@click.option("--classes", "show_classes", default=10, show_default=True, help="How many classes to list (largest and smallest).")
@json_option
def info(root, show_classes, as_json):
    """Counts per split, source and class; sizes; rejects by reason.

    \b
    Example:
      wv shard info ROOT --json
    """
    from wv.shards.info import check_show_classes, describe, summary_lines

    check_show_classes(show_classes)
    result = describe(root)
    finish(f"wv shard info: {root}", result, as_json, summary_lines(result, show_classes))


@shard.command()
@click.argument("root", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--scores", default=None, help="Comma-separated score names to embed (default: every score complete for a split).")
@click.option("--split", type=click.Choice(["train", "val"]), default=None, help="Bake only this split (default: all).")
@worker_options
@json_option
def bake(root, out, scores, split, workers, executor, ray_address, as_json):
    """Write new shards whose samples also carry KEY.scores.json ({score: {column: value}}).

    Streams each tar to a new one without decoding images. OUT is a dataset root of its own
    (wv.json, manifest with the new offsets, shards.parquet with sha256, meta and score sidecars):
    `wv shard verify OUT` checks it, and plain webdataset reads it. A killed bake resumes.

    \b
    Example:
      wv shard bake ROOT BAKED --scores lda,keywords
      python -c "import webdataset as wds; print(next(iter(wds.WebDataset('BAKED/shards/train-000000.tar', shardshuffle=False).decode()))['scores.json'])"
    """
    from wv.shards.bake import bake as bake_shards

    names = [s.strip() for s in scores.split(",") if s.strip()] if scores else None
    figures = bake_shards(root, out, scores=names, split=split, workers=workers, executor=executor, ray_address=ray_address)
    lines = [
        f"{figures['samples']} samples in {figures['shards']} shards ({figures['bytes'] / 1e6:.1f} MB); "
        f"written now {figures['shards_written']}, already complete {figures['shards_skipped']}, {figures['seconds']} s"
    ]
    lines += [f"{split_name}: {', '.join(names) or 'no scores'}" for split_name, names in figures["scores"].items()]
    lines += [f"left out {name} ({'; '.join(why)})" for name, why in figures["left_out"].items()]
    lines.append(f"next: wv shard verify {out}")
    finish(f"wv shard bake: {root} -> {out}", figures, as_json, lines)
