import shutil

import polars as pl

from wv.shards.root import Root


def test_verify_passes_on_a_good_root(built_root, wv_cli, last_json):
    result = wv_cli("shard", "verify", built_root, "--workers", "1", "--json")
    assert result.exit_code == 0, result.stdout
    figures = last_json(result.stdout)
    assert figures["ok"] and figures["problems"] == []
    assert figures["samples"] == Root(built_root).manifest().collect().height


def test_verify_lists_what_is_wrong_and_exits_1(root_copy, wv_cli, last_json):
    root = Root(root_copy)
    first, second, third = root.shard_names("train")[:3]
    damaged = bytearray(root.shard_path(first).read_bytes())
    damaged[2000] ^= 0xFF
    root.shard_path(first).write_bytes(bytes(damaged))
    root.shard_path(second).unlink()
    half = root.shard_path(third).read_bytes()
    root.shard_path(third).write_bytes(half[: len(half) // 2])
    shutil.copy(root.shard_path(root.shard_names("val")[0]), root.shards_dir / "train-999999.tar")
    result = wv_cli("shard", "verify", root_copy, "--workers", "1", "--json")
    assert result.exit_code == 1
    problems = last_json(result.stdout)["problems"]
    assert any(p.startswith(f"{first}: sha256 differs") for p in problems)
    assert any(p == f"{second}: shards/{second}.tar is missing" for p in problems)
    assert any(p.startswith(f"{third}: size") for p in problems)
    assert any(p.startswith(f"{third}/") and "not readable" in p for p in problems)
    assert "shards/train-999999.tar is not listed in shards.parquet" in problems


def test_verify_catches_a_meta_sidecar_out_of_order(root_copy, wv_cli):
    root = Root(root_copy)
    shard = root.shard_names("train")[0]
    meta = pl.read_parquet(root.meta_path(shard))
    meta.reverse().write_parquet(root.meta_path(shard))
    result = wv_cli("shard", "verify", root_copy, "--workers", "1")
    assert result.exit_code == 1 and f"meta/{shard}.parquet rows differ" in result.stdout


def test_info_counts_agree_with_the_manifest(built_root, wv_cli, last_json):
    result = wv_cli("shard", "info", built_root, "--json")
    assert result.exit_code == 0
    figures = last_json(result.stdout)
    manifest = Root(built_root).manifest().collect()
    train = figures["splits"]["train"]
    assert train["samples"] == manifest.filter(pl.col("split") == "train").height
    assert sum(train["sources"].values()) == train["samples"]
    assert sum(c["samples"] for c in train["per_class"]) == train["samples"]
    assert figures["splits"]["val"]["sources"] == {"val": 24}
    assert {r["reason"] for r in figures["rejects"]} >= {"missing file", "empty file", "not an image"}
    assert "tench" in result.stdout
