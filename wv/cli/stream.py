import click

from wv.cli.common import finish, json_option
from wv.cli.sampler_options import sampler_config, sampler_options


@click.command("stream")
@click.argument("source")
@sampler_options
@click.option("--epoch", default=0, show_default=True, help="The epoch to plan.")
@click.option("--world-size", default=1, show_default=True, help="Ranks the epoch is split over.")
@click.option("--workers", default=1, show_default=True, help="Loader workers per rank (plain URLs only: their shards are split per worker).")
@click.option("--show-classes", default=10, show_default=True, help="Classes listed in the summary (all are in --json).")
@json_option
def stream(source, epoch, world_size, workers, show_classes, as_json, **options):
    """Show what the sampler will feed in one epoch, without decoding an image or training.

    SOURCE is a dataset root (planned from its manifest and score sidecars) or plain webdataset
    shards (a .tar/.tgz, a glob or a {000..009} pattern: streamed whole, equal weights). Takes the
    same sampler options as `wv train`. Reports steps per rank (equal on every rank), draws per
    class and per subset against the target, the most draws of one sample in the epoch and in one
    batch, and which shards are skipped or partly read.

    \b
    Example:
      wv stream ROOT --class-balance draw --world-size 8 --batch-size 256
      wv stream ROOT --curriculum '0:0;3:0,1;6:0,1,2' --subset-weights 1,0.5,0.5 --epoch 3
      wv stream ROOT --batch-mix 128,64,64 --gate 'confidence.p_label >= 0.5@0,0@10' --json
      wv stream 'shards/train-{000000..000099}.tar' --world-size 2 --workers 4
    """
    from wv.errors import WvError
    from wv.shards.read import shard_urls
    from wv.shards.root import Root
    from wv.stream.plan_summary import summarise_plan, summarise_url_plan
    from wv.stream.sampling import Planner
    from wv.stream.table import load_table
    from wv.stream.urls import UrlPlanner

    config = sampler_config(options)
    if epoch < 0 or workers < 1:
        raise WvError("--epoch must be 0 or more and --workers at least 1")
    if Root(source).exists():
        figures = summarise_plan(Planner(load_table(source, config), config, world_size), epoch, progress=True)
        lines = root_lines(figures, show_classes)
    else:
        planner = UrlPlanner(shard_urls(source, config.split), config, world_size, progress=True)
        figures = summarise_url_plan(planner, epoch, workers)
        lines = url_lines(figures, show_classes)
    figures["config"] = config.to_dict()
    finish(f"wv stream: {source}, epoch {epoch}, world size {world_size}, batch size {config.batch_size}", figures, as_json, lines)


def root_lines(f: dict, show_classes: int) -> list[str]:
    funnel = f["funnel"]
    steps = [f"{funnel['samples']:,} samples"]
    if f["selection"]:
        steps.append(f"selection '{f['selection']}' keeps {funnel['after_selection']:,}")
    if f["stage"]:
        steps.append(f"curriculum stage {f['stage']['stage']} (subsets {','.join(map(str, f['stage']['subsets']))}) {funnel['after_curriculum']:,}")
    elif "after_curriculum" in funnel:
        steps.append(f"with a subset {funnel['after_curriculum']:,}")
    if "after_gates" in funnel:
        steps.append(f"gates {funnel['after_gates']:,}")
    lines = [
        f"steps per rank {f['steps_per_rank']:,} ({f['samples_per_rank']:,} samples per rank, {f['draws']:,} draws in all)",
        "pool: " + " -> ".join(steps),
    ]
    if f["labels"]:
        lines.append(f"labels: {f['labels']['column']} where present ({f['labels']['relabelled']:,} samples get another class), the web label elsewhere")
    lines += [f"gate {g['gate']}: threshold {g['threshold']:.4g}" + (f" .. {g['threshold_at_end']:.4g} over the epoch" if "threshold_at_end" in g else "") for g in f["gates"]]
    chi = f["class_chi_square"]
    lines.append(f"classes: {len(f['classes'])}, draws vs target: chi-square {chi['statistic']:.2f} over {chi['classes']} classes")
    shown = sorted(f["classes"], key=lambda c: -abs(c["drawn"] - c["target"]) / max(c["target"], 1))[:show_classes]
    for c in shown:
        lines.append(f"  {c['label']:>5} {c['names'][:28]:<28} samples {c['samples']:>8,}  pool {c['pool']:>8,}  drawn {c['drawn']:>8,}  target {c['target']:>10,.1f}")
    for s in f.get("subsets", []):
        name = "no subset" if s["subset"] < 0 else f"subset {s['subset']}"
        lines.append(f"{name}: samples {s['samples']:,}, drawn {s['drawn']:,}, target {s['target']:,.1f}, loss weight share {s['weight_share']:.3f}")
    rep = f["repetition"]
    lines.append(
        f"repetition: at most {rep['max_per_epoch']} draws of one sample in the epoch, {rep['max_per_batch']} in one batch; "
        f"{rep['samples_repeated']:,} of {rep['samples_drawn']:,} drawn samples repeated"
    )
    sh = f["shards"]
    lines.append(f"shards: {sh['total']:,}; skipped (nothing drawn) {sh['skipped']:,}, partly read {sh['partly_read']:,}, read whole {sh['fully_read']:,}")
    lines.append(
        f"bytes read {sh['bytes_read'] / 1e6:,.1f} MB ({sh['distinct_bytes'] / 1e6:,.1f} MB of distinct samples, repeats read again) "
        f"= {sh['bytes_fraction']:.1%} of the shards' {sh['bytes_total'] / 1e6:,.1f} MB"
    )
    if sh["skipped_names"]:
        lines.append(f"  skipped: {', '.join(sh['skipped_names'])}{' ...' if sh['skipped'] > len(sh['skipped_names']) else ''}")
    w = f["loss_weight"]
    lines.append(f"loss weight per sample: min {w['min']:.3g}, mean {w['mean']:.3g}, max {w['max']:.3g}")
    return lines


def url_lines(f: dict, show_classes: int) -> list[str]:
    lines = [f"{f['urls']} shard(s), streamed whole; steps per rank {f['steps_per_rank']:,} ({f['samples_per_rank']:,} samples per rank)"]
    lines += [f"rank {r['rank']}: {len(r['shards'])} shard(s)" for r in f["ranks"]]
    if "note" in f:
        return lines + [f["note"]]
    for c in f["classes"][:show_classes]:
        lines.append(f"  class {c['label']:>5}: samples {c['samples']:,}, drawn {c['drawn']:,}, target {c['target']:,.1f}")
    rep = f["repetition"]
    lines.append(f"repetition: at most {rep['max_per_epoch']} draws of one sample in the epoch, {rep['max_per_batch']} in one batch")
    return lines
