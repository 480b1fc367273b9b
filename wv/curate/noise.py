"""`wv score noise`: one probability per sample that its web label is wrong, from the evidence the root holds.

Evidence (components), found by the command that wrote each score sidecar (its _run.json):
  score lda         lda.similarity (low: suspicious)                         text
  score keywords    how typical the sample's keywords are of its class       text
                    (naive Bayes log-ratio, its own words left out)
  score density     density within the class (low: suspicious)              image
  curriculum split  subset (high: suspicious), only when no density score    image (text when split --by an lda score)
  score confidence  p_label of a model (low: suspicious)                     image
  score probe       p_label of the out-of-fold linear probe (low)            image
The probe is trained here on ROOT/features/NAME when there are features (wv.curate.probe). The
maths is wv.curate.noise_core: per-class robust z-scores squashed by asinh, a text/image latent-class model
fitted by EM, p_noisy = P(image is not of the labelled class). Memory: one component's values and the
labels over the split at a time (16 bytes a sample: 256 MB at 16M), the per-class grids and the
fitting sample; the keyword agreement needs the (class, word) counts of the split.

Writes ROOT/scores/{name}/{shard}.parquet: __key__, p_noisy, noisy (p_noisy > threshold), p_text_off
(P(text off topic), with text evidence), reason (the component that pushed hardest towards noisy,
null when none did) and c_{component} (each component's log-likelihood-ratio contribution).
"""

import re
import time
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from tqdm import tqdm

from wv.curate import noise_core
from wv.curate.noise_options import NoiseOptions, ProbeOptions
from wv.curate.probe import COMMAND as PROBE_COMMAND
from wv.errors import WvError
from wv.progress import bar_options
from wv.runtime import rng
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "score noise"
SOURCES = {  # the command that wrote a sidecar -> (its column, higher is noisier, group)
    "score lda": ("similarity", False, "text"),
    "score keywords": ("keywords", False, "text"),
    "score density": ("density", False, "image"),
    "curriculum split": ("subset", True, "image"),
    "score confidence": ("p_label", False, "image"),
    PROBE_COMMAND: ("p_label", False, "image"),
}


@dataclass(frozen=True)
class Component:
    score: str  # the sidecar's name
    command: str
    column: str
    higher_is_noisier: bool
    group: str

    @property
    def label(self) -> str:
        return "c_" + re.sub(r"[^A-Za-z0-9_]", "_", self.score)


# -- what evidence there is ------------------------------------------------------------------------------
def find_components(root: Root, shards: list, exclude: tuple = ()) -> tuple[list, list]:
    """(components, skipped: [(score, why)]) over the score sidecars complete for `shards`."""
    found, skipped = [], []
    for name in sidecars.score_names(root):
        record = sidecars.run_record(root, "scores", name, COMMAND).read() or {}
        command = record.get("command")
        if name in exclude or command not in SOURCES:
            continue
        column, higher, group = SOURCES[command]
        if not all(root.score_path(name, s).is_file() for s in shards):
            skipped.append((name, "not every shard is scored"))
            continue
        if column not in pl.read_parquet_schema(root.score_path(name, shards[0])):
            continue  # e.g. label_weights, also written by `wv score lda`
        if command == "curriculum split" and str(record.get("by", "")).split(":")[0] in lda_names(root):
            group = "text"
        found.append(Component(name, command, column, higher, group))
    if any(c.command == "score density" for c in found):
        dropped = [c for c in found if c.command == "curriculum split"]
        skipped += [(c.score, "a density score is used instead of its subsets") for c in dropped]
        found = [c for c in found if c.command != "curriculum split"]
    return found, skipped


def lda_names(root: Root) -> set:
    return {n for n in sidecars.score_names(root) if (sidecars.run_record(root, "scores", n, COMMAND).read() or {}).get("command") == "score lda"}


# -- reading one component ---------------------------------------------------------------------------------
def shard_labels(root: Root, shard: str) -> tuple[pl.Series, np.ndarray]:
    meta = pl.read_parquet(root.meta_path(shard), columns=["__key__", "label"])
    return meta["__key__"], meta["label"].cast(pl.Int64).to_numpy()


def keyword_counts(root: Root, component: Component, shards: list) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """(label, word, len) and (word, len) frames and the tokens per class: one pass over the keywords sidecar."""
    pairs, classes = None, len(root.classes())
    for shard in shards:
        keys, labels = shard_labels(root, shard)
        frame = sidecars.read_score(root, component.score, shard, [component.column], keys=keys)
        counted = frame.select(pl.Series("label", labels), pl.col(component.column).alias("word")).explode("word").drop_nulls("word").group_by("label", "word").len()
        pairs = counted if pairs is None else pl.concat([pairs, counted]).group_by("label", "word").agg(pl.col("len").sum())
    pairs = pairs if pairs is not None else pl.DataFrame(schema={"label": pl.Int64, "word": pl.String, "len": pl.UInt32})
    words = pairs.group_by("word").agg(pl.col("len").sum())
    per_class = pairs.group_by("label").agg(pl.col("len").sum()).filter(pl.col("label").is_between(0, classes - 1))
    tokens = np.zeros(classes, dtype=np.float64)
    tokens[per_class["label"].to_numpy()] = per_class["len"].to_numpy()
    return pairs.with_columns(pl.col("label").cast(pl.Int64), pl.col("len").cast(pl.Int64)), words.with_columns(pl.col("len").cast(pl.Int64)), tokens


def component_values(root: Root, component: Component, shard: str, counts: dict) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64, NaN where missing; labels) of one component over one shard."""
    keys, labels = shard_labels(root, shard)
    column = sidecars.read_score(root, component.score, shard, [component.column], keys=keys)[component.column]
    if component.command == "score keywords":
        pairs, words, tokens = counts[component.score]
        return noise_core.keyword_agreement(labels, column, pairs, words, tokens), labels
    values = np.asarray(column.cast(pl.Float64).fill_null(np.nan).to_numpy(), dtype=np.float64)
    if component.column == "p_label":  # probabilities: their logits, where a confident model's differences show
        values = np.log(np.clip(values, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(values, 1e-6, 1 - 1e-6))
    elif component.column == "density":
        values = np.log1p(np.maximum(values, 0))
    return values, labels


# -- the run ------------------------------------------------------------------------------------------------
def score_noise(
    root,
    options: NoiseOptions | None = None,
    name: str = "noise",
    features: str | None = None,
    probe: ProbeOptions | None = None,
    probe_name: str = "probe",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    started = time.time()
    root = root if isinstance(root, Root) else Root(root)
    options, probe = options or NoiseOptions(), probe or ProbeOptions()
    options.validate()
    check_name(name), check_name(probe_name)
    if name == probe_name:
        raise WvError(f"--name and --probe-name must differ (both are {name!r})")
    shards = root.shard_names(options.split)
    if not shards:
        raise WvError(f"{root.path} has no {options.split} shards")
    feature_set = probe_features(root, features, probe, options)
    components, skipped = find_components(root, shards, exclude=(name, probe_name) if feature_set else (name,))
    if not components and feature_set is None:
        raise WvError(f"{root.path} holds no evidence to score noise from: no lda, keywords, density, curriculum, confidence or probe score and no features; run a scorer or `wv embed` first")
    record = sidecars.run_record(root, "scores", name, COMMAND)
    with writing(root, COMMAND):
        record.check(run_options(options, components, feature_set, probe, probe_name), overwrite)
        probe_figures = None
        if feature_set is not None:
            from wv.curate.probe import out_of_fold

            probe_figures = out_of_fold(root, probe_name, feature_set, probe, options.split, options.seed, overwrite, progress)
            components, skipped = find_components(root, shards, exclude=(name,))
        counts = {c.score: keyword_counts(root, c, shards) for c in components if c.command == "score keywords"}
        mix, grids = fit(root, components, shards, counts, options, progress)
        todo = sidecars.begin_run(root, "scores", name, run_options(options, components, feature_set, probe, probe_name), overwrite, options.split, command=COMMAND)
        totals = write_shards(root, name, components, grids, counts, mix, options, todo, progress)
    return summarise(root, name, components, skipped, mix, totals, probe_figures, len(todo), len(shards), started)


def probe_features(root: Root, features: str | None, probe: ProbeOptions, options: NoiseOptions) -> str | None:
    """The features the probe trains on (checked), or None when the root has none and none were asked for."""
    from wv.curate.probe import default_features, probe_plan

    if features is None and default_features(root) is None:
        return None
    return probe_plan(root, features, probe, options.split, options.seed)[0]


def run_options(options: NoiseOptions, components: list, features: str | None, probe: ProbeOptions, probe_name: str) -> dict:
    used = sorted(c.score for c in components if c.score != probe_name)
    return {**asdict(options), "scores": used, "features": features, "probe_name": probe_name if features else None, "probe": asdict(probe) if features else None}


def fit(root: Root, components: list, shards: list, counts: dict, options: NoiseOptions, progress: bool):
    """Per-class grids of every component, and the mixture fitted on a seeded sample of the split's samples."""
    sizes = [pl.scan_parquet(root.meta_path(s)).select(pl.len()).collect().item() for s in shards]
    total, classes = sum(sizes), len(root.classes())
    pick = np.sort(rng(options.seed, 2).choice(total, size=min(total, options.fit_samples), replace=False))
    z, grids = np.full((len(pick), len(components)), np.nan), []
    for j, component in enumerate(tqdm(components, desc="noise: components", **bar_options(progress))):
        parts = [component_values(root, component, s, counts) for s in shards]
        values, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        grids.append(noise_core.class_grids(values, labels, classes, options.points))
        z[:, j] = noise_core.suspicion(values[pick], labels[pick], grids[-1], component.higher_is_noisier)
    return noise_core.fit_mixture(z, [c.group for c in components]), grids


def write_shards(root: Root, name: str, components: list, grids: list, counts: dict, mix, options: NoiseOptions, todo: list, progress: bool) -> dict:
    for shard in tqdm(todo, desc="noise: shards", **bar_options(progress)):
        keys, labels = shard_labels(root, shard)
        z = np.full((len(labels), len(components)), np.nan)
        for j, component in enumerate(components):
            values, _ = component_values(root, component, shard, counts)
            z[:, j] = noise_core.suspicion(values, labels, grids[j], component.higher_is_noisier)
        result = noise_core.noise_posterior(mix, z)
        sidecars.write_scores(root, name, shard, shard_frame(keys, components, result, options.threshold))
    scores = sidecars.read_scores(root, name, split=options.split, columns=["p_noisy", "noisy", "reason"]).collect()
    return {"samples": scores.height, "noisy": int(scores["noisy"].sum()), "reasons": dict(sorted(scores.filter(pl.col("noisy"))["reason"].value_counts().iter_rows(), key=lambda r: -r[1]))}


def shard_frame(keys: pl.Series, components: list, result: dict, threshold: float) -> pl.DataFrame:
    contributions = result["contributions"]
    strongest = contributions.argmax(axis=1)
    pushed = contributions[np.arange(len(keys)), strongest] > 0
    reason = [components[j].score if hit else None for j, hit in zip(strongest, pushed)]
    return pl.DataFrame(
        {
            "__key__": keys,
            "p_noisy": pl.Series(result["p_noisy"], dtype=pl.Float32),
            "noisy": pl.Series(result["p_noisy"] > threshold, dtype=pl.Boolean),
            "p_text_off": pl.Series(result["p_text_off"], dtype=pl.Float32).fill_nan(None),
            "reason": pl.Series(reason, dtype=pl.String),
            **{c.label: pl.Series(contributions[:, j], dtype=pl.Float32) for j, c in enumerate(components)},
        }
    )


def summarise(root: Root, name: str, components: list, skipped: list, mix, totals: dict, probe_figures, written: int, shards: int, started: float) -> dict:
    return {
        "samples": totals["samples"],
        "noisy": totals["noisy"],
        "noisy_share": round(totals["noisy"] / max(totals["samples"], 1), 4),
        "components": {c.score: {"group": c.group, "column": c.column} for c in components},
        "skipped": dict(skipped),
        "reasons": totals["reasons"],
        "prior": {"text_off": round(float(mix.prior[1].sum()), 4), "image_off": round(float(mix.prior[:, 1].sum()), 4)},
        "em_iterations": mix.iterations,
        "probe": probe_figures,
        "shards_written": written,
        "shards_skipped": shards - written,
        "seconds": round(time.time() - started, 2),
        "paths": {"scores": str(root.path / "scores" / name)},
    }
