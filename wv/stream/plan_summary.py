"""What a sampler will feed in one epoch, from its plan alone (no image is read): `wv stream`."""

import numpy as np
from tqdm import tqdm

from wv.progress import bar_options
from wv.stream.sampling import EpochPlan, Planner
from wv.stream.urls import UrlPlanner

NAMES_LISTED = 20


def summarise_plan(planner: Planner, epoch: int, progress: bool = False) -> dict:
    """Steps per rank, draws per class and subset against the target, repetition, shards read."""
    table, config = planner.table, planner.config
    plan = planner.plan(epoch)
    ranks = [planner.rank_rows(plan, r) for r in tqdm(range(plan.world_size), desc="stream: plan ranks", **bar_options(progress))]
    drawn_rows = np.concatenate([rows.ravel() for rows in ranks])
    counts = np.bincount(drawn_rows, minlength=table.size)
    target = np.zeros(table.size)
    for stratum in plan.strata:
        target[stratum.rows] += stratum.target
    figures = {
        "root": table.root,
        "split": table.split,
        "epoch": epoch,
        "world_size": plan.world_size,
        "batch_size": plan.batch_size,
        "steps_per_rank": plan.steps,
        "samples_per_rank": plan.steps * plan.batch_size,
        "draws": plan.draws,
        "first_step": plan.first_step,
        "selection": table.selection,
        "funnel": plan.funnel,
        "labels": {"column": config.labels, "relabelled": table.relabelled} if config.labels else None,
        "stage": stage_figures(config, epoch),
        "gates": gate_figures(config, epoch, plan),
        "strata": [{"stratum": s.name, "per_batch": s.share, "samples": int(s.rows.shape[0]), "draws": int(s.counts.sum())} for s in plan.strata],
    }
    figures.update(class_figures(table, counts, target, plan))
    if table.subset is not None:
        figures["subsets"] = subset_figures(table, counts, target, plan)
    figures["repetition"] = repetition_figures(counts, ranks, table.size)
    figures["shards"], figures["ranks"] = shard_figures(table, ranks)
    weights = plan.loss_weight[drawn_rows]
    figures["loss_weight"] = {"min": float(weights.min()), "mean": float(weights.mean()), "max": float(weights.max())}
    return figures


def stage_figures(config, epoch: int) -> dict | None:
    stages = config.curriculum_stages
    if stages is None:
        return None
    return {"stage": stages.stage(epoch), "subsets": list(stages.subsets(epoch)), "stages": len(stages.stages)}


def gate_figures(config, epoch: int, plan: EpochPlan) -> list:
    gates = []
    for gate in config.gate_list:
        time = epoch if gate.unit == "epoch" else plan.first_step
        entry = {"gate": gate.text, "unit": gate.unit, "threshold": float(gate.threshold(time))}
        if gate.unit == "step":
            entry["threshold_at_end"] = float(gate.threshold(plan.first_step + plan.steps - 1))
        gates.append(entry)
    return gates


def class_figures(table, counts: np.ndarray, target: np.ndarray, plan: EpochPlan) -> dict:
    n = table.classes
    available = np.bincount(table.label, minlength=n)
    pool = np.zeros(table.size, dtype=bool)
    for stratum in plan.strata:
        pool[stratum.rows] = True
    in_pool = np.bincount(table.label[pool], minlength=n)
    drawn = np.bincount(table.label, weights=counts, minlength=n).astype(np.int64)
    expected = np.bincount(table.label, weights=target, minlength=n)
    mass = np.bincount(table.label, weights=counts * plan.loss_weight, minlength=n)
    total_mass = mass.sum() or 1.0
    classes = [
        {
            "label": c,
            "names": table.class_names.get(c, ""),
            "samples": int(available[c]),
            "pool": int(in_pool[c]),
            "drawn": int(drawn[c]),
            "target": round(float(expected[c]), 3),
            "weight_share": round(float(mass[c] / total_mass), 6),
        }
        for c in range(n)
    ]
    used = expected > 0
    chi2 = float((((drawn - expected) ** 2)[used] / expected[used]).sum())
    return {
        "classes": classes,
        "drawn": {str(c): int(drawn[c]) for c in range(n)},
        "target": {str(c): round(float(expected[c]), 3) for c in range(n)},
        "class_chi_square": {"statistic": round(chi2, 4), "classes": int(used.sum())},
    }


def subset_figures(table, counts: np.ndarray, target: np.ndarray, plan: EpochPlan) -> list:
    subsets = table.subset.astype(np.int64)
    shifted = subsets + 1  # -1 (no subset) -> 0
    n = int(shifted.max()) + 1
    available = np.bincount(shifted, minlength=n)
    drawn = np.bincount(shifted, weights=counts, minlength=n)
    expected = np.bincount(shifted, weights=target, minlength=n)
    mass = np.bincount(shifted, weights=counts * plan.loss_weight, minlength=n)
    total_mass = mass.sum() or 1.0
    return [
        {"subset": s - 1, "samples": int(available[s]), "drawn": int(drawn[s]), "target": round(float(expected[s]), 3), "weight_share": round(float(mass[s] / total_mass), 6)}
        for s in range(n)
        if available[s]
    ]


def repetition_figures(counts: np.ndarray, ranks: list, size: int) -> dict:
    per_batch = 0
    for rows in ranks:
        keys = np.arange(rows.shape[0], dtype=np.int64)[:, None] * size + rows
        per_batch = max(per_batch, int(np.unique(keys, return_counts=True)[1].max()))
    return {"max_per_epoch": int(counts.max()), "max_per_batch": per_batch, "samples_drawn": int((counts > 0).sum()), "samples_repeated": int((counts > 1).sum())}


def shard_figures(table, ranks: list) -> tuple[dict, list]:
    """Bytes each rank reads (a sample drawn twice in one batch is read once) and which shards are untouched."""
    read_rows = np.zeros(table.size, dtype=bool)
    per_rank = []
    for rank, rows in enumerate(ranks):
        distinct = [np.unique(batch) for batch in rows]
        flat = np.concatenate(distinct)
        read_rows[flat] = True
        shards = np.unique(table.shard_id[flat])
        per_rank.append({"rank": rank, "steps": int(rows.shape[0]), "samples": int(rows.size), "shards": int(shards.shape[0]), "bytes_read": int(table.length[flat].astype(np.int64).sum())})
    read_per_shard = np.bincount(table.shard_id[read_rows], minlength=table.shards)
    samples_per_shard = np.diff(table.shard_start)
    skipped = np.flatnonzero(read_per_shard == 0)
    partly = np.flatnonzero((read_per_shard > 0) & (read_per_shard < samples_per_shard))
    bytes_read = sum(r["bytes_read"] for r in per_rank)
    total = int(table.shard_bytes.sum())
    shards = {
        "total": table.shards,
        "skipped": int(skipped.shape[0]),
        "partly_read": int(partly.shape[0]),
        "fully_read": int(table.shards - skipped.shape[0] - partly.shape[0]),
        "bytes_total": total,
        "bytes_read": bytes_read,
        "bytes_fraction": round(bytes_read / total, 6) if total else 0.0,
        "distinct_samples_read": int(read_rows.sum()),
        "distinct_bytes": int(table.length[read_rows].astype(np.int64).sum()),
        "skipped_names": [table.shard_names[s] for s in skipped[:NAMES_LISTED]],
        "partly_read_names": [table.shard_names[s] for s in partly[:NAMES_LISTED]],
    }
    return shards, per_rank


def summarise_url_plan(planner: UrlPlanner, epoch: int, workers: int) -> dict:
    """The same figures for plain URL shards, by running each slot's stream over the scanned labels."""
    steps = planner.steps(epoch)
    batch = planner.config.batch_size
    figures = {
        "urls": len(planner.urls),
        "epoch": epoch,
        "world_size": planner.world_size,
        "batch_size": batch,
        "workers": workers,
        "steps_per_rank": steps,
        "samples_per_rank": steps * batch,
        "draws": steps * batch * planner.world_size,
    }
    slots = planner.slots(epoch, workers)
    figures["ranks"] = [{"rank": r, "shards": sorted({planner.urls[p.shard] for w in range(workers) for p in slots[r * workers + w]})} for r in range(planner.world_size)]
    if planner.counts is None:
        figures["note"] = "--epoch-size given: shards were not counted, so draws per class are not known"
        return figures
    labels = planner.labels
    index = {url: s for s, url in enumerate(planner.urls)}
    read = lambda url: ({"__key__": f"{index[url]}:{i}", "label": int(label)} for i, label in enumerate(labels[index[url]]))  # noqa: E731
    drawn_keys, per_batch = [], 0
    for rank in range(planner.world_size):
        for worker in range(workers):
            keys = [(s["__key__"], s["label"], s["__step__"]) for s in planner.samples(epoch, rank, worker, workers, 0, read=read)]
            drawn_keys += keys
            by_step = {}
            for key, _, step in keys:
                by_step.setdefault((step, key), 0)
                by_step[(step, key)] += 1
            per_batch = max([per_batch, *by_step.values()])
    all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int32)
    n = int(all_labels.max()) + 2 if all_labels.size else 1
    available = np.bincount(all_labels + 1, minlength=n)
    drawn = np.bincount(np.asarray([label for _, label, _ in drawn_keys]) + 1, minlength=n)
    total = figures["draws"]
    figures["classes"] = [{"label": c - 1, "samples": int(available[c]), "drawn": int(drawn[c]), "target": round(total * available[c] / available.sum(), 3)} for c in range(n) if available[c]]
    figures["drawn"] = {str(e["label"]): e["drawn"] for e in figures["classes"]}
    figures["target"] = {str(e["label"]): e["target"] for e in figures["classes"]}
    repeats = np.unique([key for key, _, _ in drawn_keys], return_counts=True)[1]
    figures["repetition"] = {"max_per_epoch": int(repeats.max()), "max_per_batch": per_batch, "samples_drawn": int(repeats.shape[0]), "samples_repeated": int((repeats > 1).sum())}
    figures["shards"] = {"total": len(planner.urls), "skipped": 0, "read": "whole shards (no manifest)", "shared_by_slots": int(sum(p.every > 1 for slot in slots for p in slot))}
    return figures
