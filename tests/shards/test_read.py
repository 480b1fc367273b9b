"""Reading shards written by another project (webdataset's own test shard: .png + .cls, gzipped)."""

from pathlib import Path

from wv.shards.read import iter_samples, read_sample, shard_urls

THIRD_PARTY = Path(__file__).parents[1] / "data" / "webdataset_sample.tgz"


def test_third_party_shard_reads_through_wv():
    samples = list(iter_samples(shard_urls(THIRD_PARTY), decode="pil"))
    assert [s["__key__"] for s in samples] == [str(k) for k in range(10, 100)]
    assert all(s["png"].size == (28, 28) for s in samples)
    assert {int(s["cls"]) for s in samples} <= set(range(10))


def test_read_one_sample_by_key(built_root):
    from wv.shards.root import Root

    key = Root(built_root).manifest("val").collect()["__key__"][3]
    sample = read_sample(built_root, key)
    assert sample["__key__"] == key and set(sample) == {"__key__", "cls", "jpg", "json", "txt"}
