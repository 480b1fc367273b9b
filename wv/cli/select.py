import click

from wv.cli.common import finish, json_option, options_from, worker_options
from wv.curate.options import SelectOptions


@click.command("select")
@click.argument("root", type=click.Path())
@options_from(SelectOptions, "rules", "min_per_class", "max_drop_fraction", "split")
@click.option("--dry-run", is_flag=True, help="Print what would go, per rule and per class; write nothing.")
@click.option("--overwrite", is_flag=True, help="Replace a selection made with other rules or options.")
@click.option("--name", default="selection", show_default=True, help="Write ROOT/scores/NAME (the stream reads `selection`).")
@click.option("--show-classes", default=20, show_default=True, help="Classes listed in the summary (all are in --json).")
@worker_options
@options_from(SelectOptions, "seed")
@json_option
def select(root, rules, min_per_class, max_drop_fraction, split, dry_run, overwrite, name, show_classes, workers, executor, ray_address, seed, as_json):
    """Decide which samples are discarded, and why: drop rules over the score sidecars.

    A rule compares score columns, written SCORE.COLUMN (or COLUMN alone when only one score has
    it), with values: < <= > >= == != , `is null`, `in (1, 2)`, joined with and / or / not and
    parentheses. `meta.label` and `meta.source` are there too. A missing value never matches
    unless the rule says `is null`. Nothing is evaluated as Python.

    Small classes are protected: when the rules would take a class below --min-per-class samples
    or past --max-drop-fraction, the least bad of its matched samples (by the score of the rule
    that matched them) are kept and recorded as protected.

    Writes ROOT/scores/selection/{shard}.parquet: __key__, keep, rule (null when kept), matched
    (the first rule that matched, also when protection kept the sample). Re-running resumes.

    \b
    Example:
      wv select ROOT --drop "lda.similarity < 0.05" --drop "curriculum.subset == 2" --dry-run
      wv select ROOT --drop "confidence.p_label < 0.1 and curriculum.subset >= 1" --min-per-class 50
    """
    from wv.curate.select import select as run_select
    from wv.curate.select import summary_lines

    figures = run_select(
        root,
        list(rules),
        min_per_class=min_per_class,
        max_drop_fraction=max_drop_fraction,
        split=split,
        seed=seed,
        dry_run=dry_run,
        overwrite=overwrite,
        name=name,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
    )
    lines = summary_lines(figures, show_classes)
    if dry_run:
        title = f"wv select (dry run, nothing written): {root}"
    else:
        title = f"wv select: {root}"
        lines.append(f"wrote {figures['shards_written']} shard(s), {figures['shards_skipped']} already complete: {figures['paths']['selection']}")
        lines.append(f"next: wv audit {root}" + (f" --selection {name}" if name != "selection" else ""))
    finish(title, figures, as_json, lines)
