"""Equal steps on every rank under torchrun (2 processes, gloo) on deliberately uneven shards."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl

from wv.shards.root import Root
from wv.stream import SamplerConfig
from wv.stream.sampling import Planner
from wv.stream.table import load_table

SCRIPT = Path(__file__).with_name("ddp_stream.py")


def test_torchrun_ranks_take_equal_steps_and_split_the_draw(uneven_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), str(uneven_root), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["all_steps"] == ranks[1]["all_steps"]
    assert ranks[0]["all_steps"][0] == ranks[0]["all_steps"][1]  # same steps per epoch on both ranks

    config = SamplerConfig(batch_size=4, class_balance="draw", shuffle_window=16)
    planner = Planner(load_table(uneven_root, config), config, world_size=2)
    keys = Root(uneven_root).manifest("train").select("__key__").collect()["__key__"].to_numpy()
    for epoch in (0, 1):
        steps = {r["epochs"][epoch]["steps"] for r in ranks}
        assert steps == {r["epochs"][epoch]["expected"] for r in ranks} == {planner.steps(epoch)}
        plan = planner.plan(epoch)
        for rank in (0, 1):
            assert ranks[rank]["epochs"][epoch]["keys"] == keys[planner.rank_rows(plan, rank).ravel()].tolist()
        seen = Counter(ranks[0]["epochs"][epoch]["keys"] + ranks[1]["epochs"][epoch]["keys"])
        drawn = Counter(keys[plan.strata[0].rows.repeat(plan.strata[0].counts)].tolist())
        assert seen == drawn  # together the ranks read exactly the epoch's draw

    selection = pl.concat([pl.read_parquet(p) for p in sorted((Path(uneven_root) / "scores" / "selection").glob("*.parquet"))])
    kept = set(selection.filter(pl.col("keep"))["__key__"].to_list())
    assert set(ranks[0]["epochs"][0]["keys"]) | set(ranks[1]["epochs"][0]["keys"]) <= kept
