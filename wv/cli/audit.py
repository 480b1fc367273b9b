import click

from wv.cli.common import finish, json_option, options_from, worker_options
from wv.curate.options import AuditOptions


@click.command("audit")
@click.argument("root", type=click.Path())
@click.option("--out", default=None, help="Report folder (default: ROOT/reports/audit).")
@options_from(AuditOptions, "per_class", "kept_per_class", "overview", "thumb_size", "bins", "split", "selection", "relabel")
@worker_options
@options_from(AuditOptions, "seed")
@json_option
def audit(root, out, per_class, kept_per_class, overview, thumb_size, bins, split, selection, relabel, workers, executor, ray_address, seed, as_json):
    """Write an HTML report of what `wv select` discarded, to browse before trusting it.

    index.html: kept and dropped by rule, source and class; each rule's score histogram with its
    threshold; a mosaic of dropped images; every class by drop rate (filter by class or rule).
    relabel.html (when `wv relabel` made pseudo-labels, see --relabel): the samples given another
    class, web label beside new label, with their images.
    classes/NNNNN.html: a class's dropped images beside kept ones, with their web text, keywords
    and scores; filter by rule, sort by score. The folder is self-contained (no network): open
    index.html in a browser, or copy the folder anywhere. Only the images shown are read (their
    byte ranges) and decoded. Re-running reuses the thumbnails already made.

    \b
    Example:
      wv select ROOT --drop "lda.similarity < 0.05"
      wv audit ROOT --per-class 24
      xdg-open ROOT/reports/audit/index.html
    """
    from wv.curate.audit import write_report

    options = AuditOptions(per_class=per_class, kept_per_class=kept_per_class, overview=overview, thumb_size=thumb_size, bins=bins, split=split, selection=selection, relabel=relabel, seed=seed)
    figures = write_report(root, out, options, workers=workers, executor=executor, ray_address=ray_address)
    shown = figures["thumbnails"]
    lines = [
        f"{figures['samples']:,} samples: {figures['dropped']:,} dropped, {figures['protected']:,} protected, {figures['classes_with_drops']:,} of {figures['classes']:,} classes with drops",
        *[f"rule {r['rule']!r}: {r['dropped']:,} dropped" for r in figures["rules"]],
        f"{sum(shown.values()):,} thumbnails ({', '.join(f'{v:,} {k}' for k, v in shown.items())}), {figures['classes']:,} class pages",
        f"report: {figures['paths']['report']}",
    ]
    if figures.get("relabel"):
        r = figures["relabel"]
        lines.append(f"relabelled ({r['name']}): {r['changed']:,} of {r['samples']:,} samples get another class, {r['shown']:,} shown: {figures['paths']['relabel']}")
    finish(f"wv audit: {root}", figures, as_json, lines)
