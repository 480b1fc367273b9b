"""The stream itself: the batches follow the plan, do not depend on the loader workers, resume
exactly (keys and pixels), never read dropped or skipped samples; plain webdataset shards stream
too; `wv stream` reports the plan."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torchvision import transforms

from wv.errors import WvError
from wv.shards.read import read_sample
from wv.shards.root import Root
from wv.stream import SamplerConfig, Stream
from wv.train.crops import train_transform

THIRD_PARTY = Path(__file__).parents[1] / "data" / "webdataset_sample.tgz"
AUGMENT = transforms.Compose([transforms.RandomResizedCrop(16, antialias=True), transforms.RandomHorizontalFlip(), transforms.ToTensor()])


def epoch_batches(stream) -> list[dict]:
    return [batch for batch in stream]


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(x["key"] == y["key"] and x["step"] == y["step"] and torch.equal(x["image"], y["image"]) and torch.equal(x["weight"], y["weight"]) for x, y in zip(a, b))


def test_batches_follow_the_plan(stream_root):
    config = SamplerConfig(batch_size=8, class_balance="draw", columns=("synthetic.p",), curriculum="0:0,1,2", subset_weights="1,0.5,0.5")
    stream = Stream(stream_root, config, rank=1, world_size=2)
    plan = stream.rank_plan(0)
    keys = Root(stream_root).manifest("train").select("__key__").collect()["__key__"].to_numpy()  # manifest order is row order
    batches = epoch_batches(stream)
    assert len(batches) == plan.steps == len(stream.planner.rank_rows(stream.planner.plan(0), 1))
    for step, batch in enumerate(batches):
        assert batch["step"] == step and batch["epoch"] == 0
        assert batch["key"] == keys[plan.rows[step]].tolist()
        assert batch["row"].tolist() == plan.rows[step].tolist()
        assert batch["label"].tolist() == plan.label[step].tolist()
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, 24, 32)
        assert torch.allclose(batch["synthetic.p"], torch.from_numpy(plan.columns["synthetic.p"][step]))
        assert set(batch["weight"].tolist()) <= {float(w) for w in np.unique(plan.weight)}
    one = batches[3]
    tar_label = int(read_sample(stream_root, one["key"][0])["cls"])
    assert tar_label == one["label"][0].item()
    assert stream.state_dict()["epoch"] == 1 and stream.state_dict()["step"] == 0


def test_worker_count_does_not_change_the_batches(stream_root):
    config = SamplerConfig(batch_size=8, class_balance="draw", seed=3)
    alone = epoch_batches(Stream(stream_root, config, transform=AUGMENT, workers=0))
    pooled = epoch_batches(Stream(stream_root, config, transform=AUGMENT, workers=2))
    assert same_batches(alone, pooled)
    assert not torch.equal(alone[0]["image"][0], alone[1]["image"][0])


@pytest.mark.parametrize("workers, resume_at", [(0, 5), (2, 5), (2, 0)])
def test_resume_gives_the_batches_of_an_uninterrupted_run(stream_root, workers, resume_at):
    config = SamplerConfig(batch_size=8, class_balance="draw", curriculum="0:0;1:0,1,2", seed=1)
    whole = Stream(stream_root, config, transform=AUGMENT, rank=0, world_size=2, workers=workers)
    first = epoch_batches(whole)
    second = epoch_batches(whole)  # epoch 1: the next stage

    interrupted = Stream(stream_root, config, transform=AUGMENT, rank=0, world_size=2, workers=workers)
    interrupted.set_epoch(1)
    if resume_at:
        for batch in interrupted:
            if batch["step"] + 1 == resume_at:
                break
    state = interrupted.state_dict()
    assert state["epoch"] == 1 and state["step"] == resume_at

    resumed = Stream(stream_root, config, transform=AUGMENT, rank=0, world_size=2, workers=workers)
    resumed.load_state_dict(state)
    rest = epoch_batches(resumed)
    assert same_batches(rest, second[resume_at:])
    assert resumed.epoch == 2 and not same_batches(first[: len(rest)], rest)


def test_resume_reads_only_the_remaining_batches(stream_root):
    config = SamplerConfig(batch_size=8)
    stream = Stream(stream_root, config)
    plan = stream.rank_plan(0)
    stream.load_state_dict({**stream.state_dict(), "step": 20})
    read = sum(batch["read_bytes"] for batch in stream)
    expected = sum(int(plan.length[t][np.unique(plan.rows[t], return_index=True)[1]].sum()) for t in range(20, plan.steps))
    assert read == expected


def test_dropped_samples_are_never_read(uneven_root):
    stream = Stream(uneven_root, SamplerConfig(batch_size=4), rank=0, world_size=2)
    keep = pl.concat([pl.read_parquet(p) for p in sorted((Path(uneven_root) / "scores" / "selection").glob("*.parquet"))])
    kept = set(keep.filter(pl.col("keep"))["__key__"].to_list())
    keys = [k for batch in stream for k in batch["key"]]
    assert keys and set(keys) <= kept


def test_stopping_mid_epoch_and_iterating_again_continues(stream_root):
    config = SamplerConfig(batch_size=8)
    reference = epoch_batches(Stream(stream_root, config))
    stream = Stream(stream_root, config)
    head = []
    for batch in stream:
        head.append(batch)
        if len(head) == 7:
            break
    assert same_batches(head + epoch_batches(stream), reference)


@pytest.mark.parametrize("workers", [1, 2])
def test_persistent_workers_give_the_same_batches_epoch_after_epoch(stream_root, workers):
    """One set of workers for every epoch: the same batches (pixels included) as a fresh DataLoader per
    epoch, also after stopping mid-epoch, and after a resume that jumps back into an earlier epoch."""
    config = SamplerConfig(batch_size=8, class_balance="draw", curriculum="0:0;1:0,1,2", seed=2)
    fresh = Stream(stream_root, config, transform=train_transform(16), rank=0, world_size=2, workers=workers)
    expected = [epoch_batches(fresh), epoch_batches(fresh)]
    stream = Stream(stream_root, config, transform=train_transform(16), rank=0, world_size=2, workers=workers, persistent_workers=True)
    head = []
    for batch in stream:
        head.append(batch)
        if len(head) == 3:
            break
    assert same_batches(head + epoch_batches(stream), expected[0])
    assert same_batches(epoch_batches(stream), expected[1])
    stream.load_state_dict({**stream.state_dict(), "epoch": 1, "step": 4})
    assert same_batches(epoch_batches(stream), expected[1][4:])
    plans = stream._persistent[0].plan_dir
    assert len(list(Path(plans).iterdir())) == 1
    del stream
    assert not Path(plans).exists()


@pytest.mark.parametrize("persistent", [False, True])
def test_started_early_gives_the_same_batches(stream_root, persistent):
    """start() sets the workers going before the iteration (the trainer: while it validates and saves);
    the batches are the same, and a start at a position then left (a resume elsewhere) is dropped."""
    config = SamplerConfig(batch_size=8, class_balance="draw", seed=3)
    fresh = Stream(stream_root, config, transform=train_transform(16), rank=0, world_size=2, workers=2)
    expected = [epoch_batches(fresh), epoch_batches(fresh)]
    stream = Stream(stream_root, config, transform=train_transform(16), rank=0, world_size=2, workers=2, persistent_workers=persistent)
    stream.start()
    assert same_batches(epoch_batches(stream), expected[0])
    stream.start()  # epoch 1, step 0
    stream.load_state_dict({**stream.state_dict(), "epoch": 1, "step": 2})
    assert same_batches(epoch_batches(stream), expected[1][2:])


def test_persistent_workers_on_plain_shards():
    config = SamplerConfig(batch_size=8, shuffle_window=50)
    fresh = Stream(str(THIRD_PARTY), config, rank=1, world_size=2, workers=2)
    expected = [epoch_batches(fresh), epoch_batches(fresh)]
    stream = Stream(str(THIRD_PARTY), config, rank=1, world_size=2, workers=2, persistent_workers=True)
    assert same_batches(epoch_batches(stream), expected[0]) and same_batches(epoch_batches(stream), expected[1])


def test_state_from_other_options_is_refused_mid_epoch(stream_root):
    stream = Stream(stream_root, SamplerConfig(batch_size=8), rank=0, world_size=2)
    state = {**stream.state_dict(), "step": 3}
    with pytest.raises(WvError, match="other sampler options"):
        Stream(stream_root, SamplerConfig(batch_size=8, seed=5), rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(WvError, match="other world size"):
        Stream(stream_root, SamplerConfig(batch_size=8), rank=0, world_size=1).load_state_dict(state)
    at_boundary = Stream(stream_root, SamplerConfig(batch_size=8, seed=5))
    at_boundary.load_state_dict({**state, "step": 0, "epoch": 2})
    assert (at_boundary.epoch, at_boundary.step) == (2, 0)
    with pytest.raises(WvError, match="format"):
        at_boundary.load_state_dict({"epoch": 1})


# -- plain webdataset shards (no manifest) -------------------------------------------------------------
def test_third_party_shards_stream_with_equal_steps(tmp_path):
    config = SamplerConfig(batch_size=8)
    runs = {rank: epoch_batches(Stream(str(THIRD_PARTY), config, rank=rank, world_size=2, workers=2)) for rank in (0, 1)}
    assert len(runs[0]) == len(runs[1]) == -(-90 // 16)
    for batches in runs.values():
        for batch in batches:
            assert batch["image"].shape == (8, 3, 28, 28) and batch["label"].min() >= 0 and batch["label"].max() <= 9
            assert len(set(batch["key"])) == 8 and (batch["weight"] == 1).all()
    seen = {k for batches in runs.values() for b in batches for k in b["key"]}
    assert len(seen) == 90  # every sample of the shard, a few twice (padding)


def test_third_party_resume_and_worker_check():
    config = SamplerConfig(batch_size=8, shuffle_window=50)
    reference = epoch_batches(Stream(str(THIRD_PARTY), config, rank=1, world_size=2, workers=2))
    stream = Stream(str(THIRD_PARTY), config, rank=1, world_size=2, workers=2)
    stream.load_state_dict({**stream.state_dict(), "step": 3})
    assert same_batches(epoch_batches(stream), reference[3:])
    with pytest.raises(WvError, match="number of loader workers"):
        Stream(str(THIRD_PARTY), config, rank=1, world_size=2, workers=1).load_state_dict({**stream.state_dict(), "epoch": 0, "step": 3})


def test_third_party_refuses_root_only_options():
    with pytest.raises(WvError, match="--class-balance need"):
        Stream(str(THIRD_PARTY), SamplerConfig(batch_size=8, class_balance="draw"))


# -- wv stream -------------------------------------------------------------------------------------------
def test_wv_stream_reports_the_plan(stream_root, wv_cli, last_json):
    result = wv_cli("stream", stream_root, "--class-balance", "draw", "--world-size", "3", "--batch-size", "8", "--curriculum", "0:0;2:0,1,2", "--epoch", "0", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["steps_per_rank"] == [r["steps"] for r in figures["ranks"]][0]
    assert len({r["steps"] for r in figures["ranks"]}) == 1
    assert sum(c["drawn"] for c in figures["classes"]) == figures["draws"] == 3 * 8 * figures["steps_per_rank"]
    assert set(figures["drawn"]) == set(figures["target"]) == {str(c) for c in range(8)}
    assert {s["subset"]: s["drawn"] for s in figures["subsets"]}[1] == 0
    assert figures["stage"]["subsets"] == [0]
    assert figures["shards"]["bytes_fraction"] < 0.9  # the first stage reads the clean part only
    assert "steps per rank" in result.stdout and "repetition" in result.stdout


def test_wv_stream_third_party(wv_cli, last_json):
    result = wv_cli("stream", THIRD_PARTY, "--world-size", "2", "--batch-size", "8", "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["steps_per_rank"] == 6 and sum(figures["drawn"].values()) == 96
    assert figures["repetition"]["max_per_batch"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--curriculum", "2:0"], "must start at epoch 0"),
        (["--batch-mix", "4,4", "--batch-size", "16"], "adds up to 8"),
        (["--gate", "nothere.p > 1"], "no score 'nothere'"),
        (["--world-size", "0"], "world-size"),
    ],
)
def test_wv_stream_bad_options_exit_2(stream_root, wv_cli, args, message):
    result = wv_cli("stream", stream_root, *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_wv_stream_help_has_an_example(wv_cli):
    result = wv_cli("stream", "--help")
    assert result.exit_code == 0 and "Example:" in result.output and "--class-balance" in result.output


def test_member_parser_reads_pax_gnu_and_ustar_long_names():
    import io
    import tarfile

    from wv.stream.range_reader import split_members

    for fmt, name in [(tarfile.PAX_FORMAT, "k" * 120), (tarfile.GNU_FORMAT, "d/" + "k" * 120), (tarfile.USTAR_FORMAT, "d" * 90 + "/" + "k" * 90)]:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            for ext, data in [("jpg", b"image"), ("cls", b"3")]:
                info = tarfile.TarInfo(f"{name}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        assert split_members(buffer.getvalue()) == {"__key__": name, "jpg": b"image", "cls": b"3"}


def test_state_from_other_sidecars_is_refused_mid_epoch(stream_root_copy, selection_writer):
    config = SamplerConfig(batch_size=8)
    state = {**Stream(stream_root_copy, config).state_dict(), "step": 2}
    selection_writer(stream_root_copy, lambda i, frame: np.arange(frame.height) % 2 == 0)
    with pytest.raises(WvError, match="sidecars changed"):
        Stream(stream_root_copy, config).load_state_dict(state)


def test_a_damaged_shard_fails_with_one_sentence_from_a_worker(stream_root_copy):
    shard = sorted((Path(stream_root_copy) / "shards").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:2000])
    with pytest.raises(WvError, match="shorter than the manifest says") as error:
        epoch_batches(Stream(stream_root_copy, SamplerConfig(batch_size=8), workers=2))
    assert "\n" not in str(error.value)


def test_auto_selection_applies_to_its_own_split(root_copy, selection_writer):
    selection_writer(root_copy, lambda i, frame: np.arange(frame.height) % 3 != 0)
    train = Stream(root_copy, SamplerConfig(batch_size=4, rounding="trim"))
    assert train.planner.table.selection == "selection" and not train.planner.table.keep.all()
    val = Stream(root_copy, SamplerConfig(batch_size=4, split="val", rounding="trim"))
    assert val.planner.table.keep is None
    keys = [k for batch in val for k in batch["key"]]
    assert keys and all(k.startswith("val-") for k in keys)
