import click

from wv.cli.common import finish, json_option, options_from
from wv.synth_options import SynthOptions


def parse_size(ctx, param, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 96x72") from None
    return width, height


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@options_from(SynthOptions, "classes", "per_class", "noise", "outlier_share", "image_flip_share", "offtopic_text", "imbalance", "val_per_class")
@click.option("--version", type=click.Choice(["1", "2"]), default=SynthOptions.version.removesuffix(".0"), show_default=True, help="WebVision layout: 1 (1.0) or 2 (2.0).")
@click.option("--image-size", default=f"{SynthOptions.width}x{SynthOptions.height}", show_default=True, callback=parse_size, help="WIDTHxHEIGHT of every image.")
@options_from(SynthOptions, "defects", "duplicates")
@click.option("--workers", default=1, show_default=True, help="Processes rendering images.")
@options_from(SynthOptions, "seed")
@json_option
def synth(out, classes, per_class, noise, outlier_share, image_flip_share, offtopic_text, imbalance, val_per_class, version, image_size, defects, duplicates, workers, seed, as_json):
    """Write a synthetic dataset in the real WebVision on-disk layout, with known noise.

    OUT gets info/, meta/, the images and ground_truth.parquet (key -> is_noisy, true_label, noise).

    \b
    Example:
      wv synth data/wv-synth --classes 20 --per-class 250 --noise 0.3 --version 2
      wv synth data/wv-dups --duplicates 0.1
    """
    from wv.synth import write_synth

    opts = SynthOptions(
        classes=classes,
        per_class=per_class,
        noise=noise,
        outlier_share=outlier_share,
        image_flip_share=image_flip_share,
        offtopic_text=offtopic_text,
        imbalance=imbalance,
        val_per_class=val_per_class,
        version=f"{version}.0",
        seed=seed,
        width=image_size[0],
        height=image_size[1],
        defects=defects,
        duplicates=duplicates,
    )
    result = write_synth(out, opts, workers=workers)
    lines = [
        f"{result['train']} train and {result['val']} val images, {result['classes']} classes, WebVision {result['version']} layout",
        f"{result['noisy']} noisy train images planted; ground truth in {out}/ground_truth.parquet",
    ]
    if duplicates:
        lines.append(f"{sum(result['duplicates'].values())} copies planted ({', '.join(f'{n} {k}' for k, n in result['duplicates'].items())}); duplicate_of in the ground truth")
    if defects:
        lines.append(f"{len(result['defects'])} broken inputs planted; see {out}/defects.json")
    finish(f"wv synth: wrote {out}", result, as_json, lines)
