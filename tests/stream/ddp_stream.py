"""Run under torchrun by test_stream_ddp.py: each rank streams two epochs of ROOT with a collective
after every batch (as DDP's gradient all-reduce does), then writes what it saw to OUT/rank{R}.json.
A rank with more batches than another would wait in all_reduce until the timeout."""

import datetime
import json
import sys

import torch
import torch.distributed as dist

from wv.stream import SamplerConfig, Stream


def main(root: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    stream = Stream(root, SamplerConfig(batch_size=4, class_balance="draw", shuffle_window=16), workers=1)
    epochs = []
    while stream.epoch < 2:
        expected, keys = len(stream), []
        for batch in stream:
            done = torch.ones(1)
            dist.all_reduce(done)
            keys += batch["key"]
        epochs.append({"steps": len(keys) // 4, "expected": expected, "keys": keys})
    counts = torch.tensor([e["steps"] for e in epochs])
    gathered = [torch.zeros_like(counts) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, counts)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"rank": rank, "world_size": dist.get_world_size(), "epochs": epochs, "all_steps": [g.tolist() for g in gathered]}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
