"""The maths of `wv score noise`: evidence columns in, the probability that each web label is wrong out.

Arrays in, arrays out (no root, no sidecars, no pool); wv.curate.noise is the driver.

1. Each piece of evidence (a component: an LDA similarity, a keyword agreement, a density, a model's
   p_label on the logit scale ...) becomes a robust z-score within the sample's class (minus the
   class median, over the class's interquartile range / 1.349), oriented so that high is suspicious.
   Classes differ in how clean they are and scores in scale; a per-class robust z makes components
   comparable and free of units while keeping the shape of each score (the bump of noisy samples
   the mixture finds; ranks would flatten it), then squashed by asinh (linear near the median,
   logarithmic in the tails): web scores have long tails and clumps of ties far out, on which a
   normal mixture would otherwise spend its "bad" state. The class statistics come from a grid of
   at most `points` order statistics per class: memory is classes x points, not the samples.
2. A latent-class model, fitted by EM without ground truth: the text of a sample is on topic or off
   topic (text components), its image is of the labelled class or not (image components); the four
   joint states have a learnt prior (usually both are off together), and each component is a normal
   distribution on z given its own group's state. The label is wrong when the image is not of the
   class, so p_noisy = P(image off | evidence): off-topic text alone with an image that fits is not
   called a wrong label. Without any image component the text state stands for the label.
   Components of one group read the same source (the same text, or the same pixels), so a group's
   log-likelihood is the mean of its components' (each source counted once, not once per score).
   EM starts from several shares of "bad" samples and keeps the fit of highest likelihood; no
   state's spread may fall below SD_FLOOR, so a state cannot collapse onto a clump of equal values.
3. A component's contribution is its share of its group's log-likelihood ratio (bad vs good): the
   audit shows which evidence called a sample noisy.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

GROUPS = ("text", "image")
SD_FLOOR = 0.25
Z_LIMIT = 8.0
START_SHARES = (0.1, 0.2, 0.35, 0.5)


# -- 1. per-class robust z, squashed ---------------------------------------------------------------------
def class_grids(values: np.ndarray, labels: np.ndarray, classes: int, points: int = 4096) -> list:
    """Per class: up to `points` evenly spaced order statistics of its finite values (all of them when fewer)."""
    grids = [np.empty(0)] * classes
    finite = np.isfinite(values)
    order = np.argsort(labels[finite], kind="stable")
    sorted_labels, sorted_values = labels[finite][order], values[finite][order]
    bounds = np.searchsorted(sorted_labels, np.arange(classes + 1))
    for label in range(classes):
        members = np.sort(sorted_values[bounds[label] : bounds[label + 1]])
        if len(members) > points:
            members = members[np.linspace(0, len(members) - 1, points).round().astype(np.int64)]
        grids[label] = members
    return grids


def suspicion(values: np.ndarray, labels: np.ndarray, grids: list, higher_is_noisier: bool) -> np.ndarray:
    """z = asinh of the value's robust z-score within its class (median and interquartile range of the
    class), oriented so that high is suspicious; NaN where missing or where the class has fewer than 2 values."""
    z = np.full(len(values), np.nan)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        grid = grids[label] if 0 <= label < len(grids) else np.empty(0)
        present = rows[np.isfinite(values[rows])]
        if len(grid) < 2 or not len(present):
            continue
        low, middle, high = np.quantile(grid, [0.25, 0.5, 0.75])
        spread = (high - low) / 1.349
        if spread <= 0:
            spread = max(float(grid.std()), 1e-6)  # most of the class on one value (counts, subsets): its standard deviation
        signed = (values[present] - middle) / spread
        z[present] = np.clip(signed if higher_is_noisier else -signed, -Z_LIMIT, Z_LIMIT)
    return np.arcsinh(z)


# -- 2. the latent-class model ------------------------------------------------------------------------
@dataclass
class Mixture:
    groups: list  # the group of each component (GROUPS)
    mean: np.ndarray  # (components, 2): state 0 good, 1 bad
    sd: np.ndarray
    prior: np.ndarray  # (2, 2) over (text state, image state); a group absent keeps its state 0
    iterations: int

    @property
    def present(self) -> list:
        return [g for g in GROUPS if g in self.groups]


def normal_logpdf(z, mean, sd):
    return -0.5 * ((z - mean) / sd) ** 2 - np.log(sd) - 0.9189385332046727


def group_loglik(mix: Mixture, z: np.ndarray) -> tuple[dict, np.ndarray]:
    """Per group: (n, 2) log-likelihoods of its states; and each component's contribution (n, components)."""
    out, contributions = {}, np.zeros(z.shape)
    for group in mix.present:
        cols = [j for j, g in enumerate(mix.groups) if g == group]
        zg = z[:, cols]
        have = np.isfinite(zg)
        count = np.maximum(have.sum(axis=1, keepdims=True), 1)
        per_state = [np.where(have, normal_logpdf(zg, mix.mean[cols, s], mix.sd[cols, s]), 0.0) / count for s in (0, 1)]
        out[group] = np.stack([p.sum(axis=1) for p in per_state], axis=1)
        contributions[:, cols] = per_state[1] - per_state[0]
    return out, contributions


def joint_posterior(mix: Mixture, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2, 2) posterior over (text state, image state), and the contributions."""
    loglik, contributions = group_loglik(mix, z)
    log_joint = np.log(np.maximum(mix.prior, 1e-300))[None].repeat(len(z), axis=0)
    if "text" in loglik:
        log_joint = log_joint + loglik["text"][:, :, None]
    if "image" in loglik:
        log_joint = log_joint + loglik["image"][:, None, :]
    log_joint -= log_joint.max(axis=(1, 2), keepdims=True)
    joint = np.exp(log_joint)
    return joint / joint.sum(axis=(1, 2), keepdims=True), contributions


def state_marginals(mix: Mixture, joint: np.ndarray) -> dict:
    """P(bad) per group, from the joint posterior."""
    return {"text": joint[:, 1, :].sum(axis=1), "image": joint[:, :, 1].sum(axis=1)}


def fit_mixture(z: np.ndarray, groups: list, iterations: int = 300, tol: float = 1e-7, start_shares: tuple = START_SHARES) -> Mixture:
    """EM on z (n, components; NaN = missing), once from each start share; the fit of highest likelihood."""
    if not groups or z.shape[1] != len(groups) or any(g not in GROUPS for g in groups):
        raise ValueError(f"one group of {GROUPS} per component, got {groups}")
    fits = [fit_from(z, groups, share, iterations, tol) for share in start_shares]
    return max(fits, key=lambda mix: mixture_loglik(mix, z))


def fit_from(z: np.ndarray, groups: list, start_share: float, iterations: int, tol: float) -> Mixture:
    """EM started from the `start_share` most suspicious samples of each group as bad."""
    mix = Mixture(list(groups), np.zeros((len(groups), 2)), np.ones((len(groups), 2)), np.zeros((2, 2)), 0)
    bad = {}
    for group in mix.present:
        cols = [j for j, g in enumerate(groups) if g == group]
        have = np.isfinite(z[:, cols])
        score = np.where(have, z[:, cols], 0.0).sum(axis=1) / np.maximum(have.sum(axis=1), 1)  # a sample with none: 0, the median
        bad[group] = (score > np.quantile(score, 1 - start_share)).astype(float)
    joint = np.zeros((len(z), 2, 2))
    text_bad, image_bad = bad.get("text", np.zeros(len(z))), bad.get("image", np.zeros(len(z)))
    for t in (0, 1):
        for i in (0, 1):
            joint[:, t, i] = (text_bad if t else 1 - text_bad) * (image_bad if i else 1 - image_bad)
    if "text" not in bad or "image" not in bad:  # one group: its state is the label's
        only = bad["text"] if "text" in bad else bad["image"]
        joint[:] = 0
        joint[:, 0, 0], joint[:, int("text" in bad), int("image" in bad)] = 1 - only, only
    previous = -np.inf
    for step in range(1, iterations + 1):
        maximise(mix, z, joint)
        joint, _ = joint_posterior(mix, z)
        loglik = mixture_loglik(mix, z)
        mix.iterations = step
        if abs(loglik - previous) < tol * max(1.0, abs(loglik)):
            break
        previous = loglik
    orient(mix)
    return mix


def maximise(mix: Mixture, z: np.ndarray, joint: np.ndarray) -> None:
    mix.prior = joint.mean(axis=0)
    marginals = state_marginals(mix, joint)
    for j, group in enumerate(mix.groups):
        have = np.isfinite(z[:, j])
        zj, bad = z[have, j], marginals[group][have]
        for state, weight in ((0, 1 - bad), (1, bad)):
            total = weight.sum()
            if total < 1e-9:
                continue
            mean = (weight * zj).sum() / total
            mix.mean[j, state] = mean
            mix.sd[j, state] = max(np.sqrt((weight * (zj - mean) ** 2).sum() / total), SD_FLOOR)


def mixture_loglik(mix: Mixture, z: np.ndarray) -> float:
    loglik, _ = group_loglik(mix, z)
    total = np.log(np.maximum(mix.prior, 1e-300))[None].repeat(len(z), axis=0)
    if "text" in loglik:
        total = total + loglik["text"][:, :, None]
    if "image" in loglik:
        total = total + loglik["image"][:, None, :]
    peak = total.max(axis=(1, 2), keepdims=True)
    return float((peak[:, 0, 0] + np.log(np.exp(total - peak).sum(axis=(1, 2)))).sum())


def orient(mix: Mixture) -> None:
    """The bad state of each group is the one whose components sit higher (more suspicious) on average."""
    for axis, group in ((0, "text"), (1, "image")):
        cols = [j for j, g in enumerate(mix.groups) if g == group]
        if cols and mix.mean[cols, 1].mean() < mix.mean[cols, 0].mean():
            mix.mean[cols] = mix.mean[cols][:, ::-1]
            mix.sd[cols] = mix.sd[cols][:, ::-1]
            mix.prior = mix.prior[::-1, :] if axis == 0 else mix.prior[:, ::-1]


def noise_posterior(mix: Mixture, z: np.ndarray) -> dict:
    """p_noisy (P(image off), or P(text off) with no image component), p_text_off (NaN without text) and contributions."""
    joint, contributions = joint_posterior(mix, z)
    marginals = state_marginals(mix, joint)
    label = "image" if "image" in mix.present else "text"
    p_text = marginals["text"] if "text" in mix.present else np.full(len(z), np.nan)
    return {"p_noisy": marginals[label], "p_text_off": p_text, "contributions": contributions}


# -- keyword agreement: how typical a sample's keywords are of its class ----------------------------------
def keyword_agreement(labels: np.ndarray, keywords: pl.Series | list, pair_counts: pl.DataFrame, word_counts: pl.DataFrame, class_tokens: np.ndarray, smoothing: float = 0.5) -> np.ndarray:
    """Mean over a sample's keywords of log P(word | its class) / P(word), its own words left out of the counts
    (naive Bayes evidence for the label from the text); NaN for a sample without keywords.
    pair_counts: (label, word, len) over the split; word_counts: (word, len). One vectorised pass (no Python loop per sample)."""
    vocabulary = max(word_counts.height, 1)
    total = float(class_tokens.sum())
    samples = pl.DataFrame({"row": np.arange(len(labels)), "label": np.asarray(labels, dtype=np.int64), "word": pl.Series("word", keywords, dtype=pl.List(pl.String))})
    own = samples.with_columns(pl.col("word").list.len().alias("n")).explode("word").drop_nulls("word").group_by("row", "label", "word", "n").len("k")
    own = own.join(pair_counts.rename({"len": "pair"}), on=["label", "word"], how="left").join(word_counts.rename({"len": "all"}), on="word", how="left")
    tokens = pl.DataFrame({"label": np.arange(len(class_tokens), dtype=np.int64), "in_class": np.asarray(class_tokens, dtype=np.float64)})
    own = own.join(tokens, on="label", how="left").with_columns(pl.col("in_class").fill_null(0.0))
    k, n = pl.col("k").cast(pl.Float64), pl.col("n").cast(pl.Float64)
    p_class = (pl.col("pair").fill_null(0) - k + smoothing) / (pl.col("in_class") - n + smoothing * vocabulary)
    p_all = (pl.col("all").fill_null(0) - k + smoothing) / (total - n + smoothing * vocabulary)
    scored = own.group_by("row").agg(((k * (p_class.log() - p_all.log())).sum() / n.first()).alias("score"))
    out = np.full(len(labels), np.nan)
    out[scored["row"].to_numpy()] = scored["score"].to_numpy()
    return out
