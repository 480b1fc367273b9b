"""`wv score noise` and `wv score labelissues` (see wv/curate/noise.py, labelissues.py)."""

import click

from wv.cli.common import finish, json_option, options_from
from wv.curate.noise_options import NoiseOptions, ProbeOptions


def probe_options(fn):
    fn = options_from(ProbeOptions)(fn)
    fn = click.option("--probe-name", default="probe", show_default=True, help="The out-of-fold probe's score sidecar (reused by the other command when the options match).")(fn)
    return click.option("--features", default=None, help="ROOT/features/NAME for the probe (default: the one feature set, if any).")(fn)


@click.command()
@click.argument("root", type=click.Path())
@probe_options
@click.option("--name", default="noise", show_default=True, help="Write ROOT/scores/NAME.")
@options_from(NoiseOptions)
@click.option("--overwrite", is_flag=True, help="Replace a noise score made with other options or other evidence.")
@json_option
def noise(root, features, probe_name, folds, epochs, lr, batch_size, mix_shards, name, threshold, points, fit_samples, split, seed, overwrite, as_json):
    """One probability per sample that its web label is wrong, from all the evidence the root holds.

    Uses every score sidecar present (lda, keywords, density or curriculum subsets, confidence) and
    an out-of-fold linear probe on ROOT/features/NAME when there are features (K folds of shards: a
    sample is predicted by a probe that never saw it). Unsupervised: each component becomes a
    robust z-score within the sample's class (median, interquartile range), squashed by asinh
    against long tails; an EM-fitted latent-class model (the best of several starts) then says
    whether the text is off topic (text evidence) and whether the image is of another class (image
    evidence), each source counted once. p_noisy = P(image not of the labelled class): off-topic text
    on a fitting image is not a wrong label; with text evidence only, the text decides. noisy =
    p_noisy > --threshold. Each component's log-likelihood-ratio contribution is kept (c_NAME) and
    the strongest is the sample's `reason`.
    Writes ROOT/scores/NAME/{shard}.parquet: __key__, p_noisy, noisy, p_text_off, reason, c_*.

    \b
    Example:
      wv score noise ROOT --features clip
      wv select ROOT --drop "noise.noisy"
      wv audit ROOT
    """
    from wv.curate.noise import score_noise

    figures = score_noise(
        root,
        NoiseOptions(threshold=threshold, points=points, fit_samples=fit_samples, split=split, seed=seed),
        name=name,
        features=features,
        probe_name=probe_name,
        overwrite=overwrite,
        probe=ProbeOptions(folds=folds, epochs=epochs, lr=lr, batch_size=batch_size, mix_shards=mix_shards),
    )
    groups = ", ".join(f"{score} ({c['group']})" for score, c in figures["components"].items())
    finish(
        f"wv score noise: {root}",
        figures,
        as_json,
        [
            f"evidence: {groups}" + (f"; left out: {', '.join(figures['skipped'])}" if figures["skipped"] else ""),
            f"noisy {figures['noisy']} of {figures['samples']} ({figures['noisy_share']:.1%}) at p_noisy > {threshold}; "
            f"prior: image off {figures['prior']['image_off']:.1%}, text off {figures['prior']['text_off']:.1%}",
            f"reasons: {', '.join(f'{k} {v}' for k, v in figures['reasons'].items()) or 'none'}",
            f"scores: {figures['paths']['scores']}",
            f'next: wv select {root} --drop "{name}.noisy"',
        ],
    )


@click.command()
@click.argument("root", type=click.Path())
@probe_options
@click.option("--name", default="labelissues", show_default=True, help="Write ROOT/scores/NAME.")
@click.option(
    "--filter-by",
    default="prune_by_noise_rate",
    show_default=True,
    type=click.Choice(["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]),
    help="cleanlab's find_label_issues method.",
)
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seeds the probe.")
@click.option("--overwrite", is_flag=True, help="Replace a labelissues score made with other options.")
@json_option
def labelissues(root, features, probe_name, folds, epochs, lr, batch_size, mix_shards, name, filter_by, split, seed, overwrite, as_json):
    """cleanlab's confident learning (find_label_issues, get_label_quality_scores) on out-of-fold probe predictions.

    The same out-of-fold linear probe as `wv score noise` (reused when its options match), so the
    two can be compared side by side. cleanlab holds samples x classes probabilities in memory.
    Writes ROOT/scores/NAME/{shard}.parquet: __key__, label_issue, label_quality.

    \b
    Example:
      wv score labelissues ROOT --features clip
      wv select ROOT --drop "labelissues.label_issue"
    """
    from wv.curate.labelissues import score_labelissues

    figures = score_labelissues(
        root,
        features,
        name=name,
        probe_name=probe_name,
        filter_by=filter_by,
        split=split,
        seed=seed,
        overwrite=overwrite,
        probe=ProbeOptions(folds=folds, epochs=epochs, lr=lr, batch_size=batch_size, mix_shards=mix_shards),
    )
    finish(
        f"wv score labelissues: {root}",
        figures,
        as_json,
        [
            f"cleanlab ({filter_by}) on the out-of-fold probe of {figures['probe']['features']}: {figures['label_issues']} label issues of {figures['samples']} ({figures['issue_share']:.1%})",
            f"scores: {figures['paths']['scores']}",
        ],
    )
