"""The held-out slice of a dataset root's split, read once through the stream's own reader.

Each rank reads every world-size-th held-out row (in split order, so shards are read straight
through), in batches padded to full size by repeating the last row with weight 0.
"""

import numpy as np
import torch

from wv.runtime import one_thread, unwrap_errors
from wv.stream.config import SamplerConfig
from wv.stream.loader import EpochDataset, as_tensors
from wv.stream.sampling import RankPlan
from wv.train.crops import EvalCrops


def holdout_plan(table, rows: np.ndarray, rank: int, world_size: int, batch_size: int) -> RankPlan | None:
    mine = np.sort(rows)[rank::world_size]
    if not mine.size:
        return None
    steps = -(-mine.size // batch_size)
    padded = np.concatenate([mine, np.full(steps * batch_size - mine.size, mine[-1])]).reshape(steps, batch_size)
    weight = np.zeros(padded.size, dtype=np.float32)
    weight[: mine.size] = 1.0
    return RankPlan(
        0,
        rank,
        world_size,
        steps,
        0,
        table.shard_paths,
        padded,
        table.shard_id[padded],
        table.offset[padded],
        table.length[padded],
        table.label[padded],
        np.full(padded.shape, -1, dtype=np.int16),
        weight.reshape(steps, batch_size),
        {},
    )


def holdout_batches(stream, rows: np.ndarray, world, batch_size: int, size: int, workers: int):
    """Batches (image uint8 [B, 1, 3, size, size] centre crops, row, weight: 0 on padding) of this rank's share."""
    plan = holdout_plan(stream.planner.table, rows, world.rank, world.size, batch_size)
    if plan is None:
        return
    config = SamplerConfig(batch_size=batch_size, seed=stream.config.seed, split=stream.config.split)
    dataset = EpochDataset(plan, 0, world.rank, 0, config, EvalCrops(size, 1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=min(workers, plan.steps), worker_init_fn=one_thread)
    for batch in unwrap_errors(loader):
        yield as_tensors(batch)
