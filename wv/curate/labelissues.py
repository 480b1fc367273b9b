"""`wv score labelissues`: cleanlab's confident learning on the out-of-fold probe predictions.

The reference method for finding label errors (Northcutt et al., JAIR 2021; the cleanlab library):
`cleanlab.filter.find_label_issues` (which samples to call label issues, from the confident joint of
given and predicted labels) and `cleanlab.rank.get_label_quality_scores` (a score per sample, low:
likely wrong), both on the same out-of-fold probe predictions `wv score noise` uses (wv.curate.probe).
cleanlab takes the predicted probabilities of the whole split in memory: samples x classes x 4 bytes
(16M samples of 1,000 classes would be 64 GB), so this is for what fits; `wv score noise` streams.

Writes ROOT/scores/{name}/{shard}.parquet: __key__, label_issue (bool), label_quality (float32).
"""

import time
from dataclasses import asdict

import numpy as np
import polars as pl

from wv.curate.noise_options import ProbeOptions
from wv.curate.probe import out_of_fold, probe_plan, read_probabilities, shard_labels
from wv.errors import WvError
from wv.runtime import check_seed
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

COMMAND = "score labelissues"
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def score_labelissues(
    root,
    features: str | None = None,
    name: str = "labelissues",
    probe: ProbeOptions | None = None,
    probe_name: str = "probe",
    filter_by: str = "prune_by_noise_rate",
    split: str = "train",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    started = time.time()
    root = root if isinstance(root, Root) else Root(root)
    probe = probe or ProbeOptions()
    check_seed(seed)
    check_name(name), check_name(probe_name)
    if name == probe_name:
        raise WvError(f"--name and --probe-name must differ (both are {name!r})")
    if filter_by not in FILTERS:
        raise WvError(f"--filter-by must be one of {', '.join(FILTERS)}")
    features = probe_plan(root, features, probe, split, seed)[0]
    options = {"features": features, "probe_name": probe_name, "probe": asdict(probe), "filter_by": filter_by, "split": split, "seed": seed}
    record = sidecars.run_record(root, "scores", name, COMMAND)
    with writing(root, COMMAND):
        record.check(options, overwrite)
        probe_figures = out_of_fold(root, probe_name, features, probe, split, seed, overwrite, progress)
        shards = root.shard_names(split)
        probs, labels = read_probabilities(root, probe_name, shards)
        if labels.min() < 0 or labels.max() >= probs.shape[1]:
            raise WvError(f"{root.path} has labels outside its {probs.shape[1]} classes; run `wv shard verify`")
        issues = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
        quality = get_label_quality_scores(labels, probs)
        todo = set(sidecars.begin_run(root, "scores", name, options, overwrite, split, command=COMMAND))
        start = 0
        for shard in shards:
            keys, _ = shard_labels(root, shard)
            end = start + keys.len()
            if shard in todo:
                sidecars.write_scores(
                    root,
                    name,
                    shard,
                    pl.DataFrame({"__key__": keys, "label_issue": pl.Series(issues[start:end], dtype=pl.Boolean), "label_quality": pl.Series(quality[start:end].astype(np.float32), dtype=pl.Float32)}),
                )
            start = end
    return {
        "samples": int(len(labels)),
        "label_issues": int(issues.sum()),
        "issue_share": round(float(issues.mean()), 4),
        "filter_by": filter_by,
        "probe": probe_figures,
        "shards_written": len(todo),
        "seconds": round(time.time() - started, 2),
        "paths": {"scores": str(root.path / "scores" / name), "probe": str(root.path / "scores" / probe_name)},
    }
