"""`wv score density`: CurriculumNet densities, exactly as the reference computes them (the oracle in
reference_curriculumnet.py), in tiles, through both exact paths, for awkward classes; the approximate
mode; the command over a dataset root (gathering classes from per-shard features, resume, bad input)."""

import numpy as np
import polars as pl
import pytest
from image_data import noisy_root, trained_checkpoint, truth_by_shard_order
from reference_curriculumnet import reference_curriculum, reference_density

from wv.curate import density as density_module
from wv.curate import density_core
from wv.curate.curriculum import kmeans_subsets
from wv.curate.density import DensityOptions, class_groups, score_density
from wv.curate.density_core import class_density
from wv.curate.embed import embed
from wv.models import ModelSpec
from wv.shards import sidecars
from wv.shards.root import Root


def clustered(n, dim, seed, outliers=0.2, clusters=3):
    """A class: a few tight clusters plus spread-out outliers (what label noise looks like)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + rng.normal(0, 1, size=(n, dim))
    wild = rng.random(n) < outliers
    x[wild] = rng.normal(0, 6, size=(wild.sum(), dim))
    return x.astype(np.float16).astype(np.float32)  # as stored by `wv embed`


CASES = {
    "clusters": clustered(700, 24, 0),
    "wide, PCA to 256": clustered(420, 300, 1),
    "offset far from 0": clustered(500, 16, 2) + 300.0,
    "integer grid (many equal distances)": np.random.default_rng(3).integers(0, 3, size=(600, 4)).astype(np.float32),
    "70% duplicates": np.concatenate([np.ones((350, 8)), np.random.default_rng(4).normal(size=(150, 8))]).astype(np.float32),
    "all identical": np.ones((40, 5), np.float32),
    "two points": np.array([[0.0, 0.0], [3.0, 4.0]], np.float32),
    "three points": np.array([[0.0], [1.0], [5.0]], np.float32),
    "one point": np.array([[1.0, 2.0]], np.float32),
}


def assert_like_reference(features, result, seed=0):
    densities, deltas, cutoff = reference_density(features, random_state=seed)
    np.testing.assert_array_equal(result.density, densities.astype(np.int64))
    assert result.cutoff == pytest.approx(cutoff, rel=1e-12, abs=1e-12)
    scale = max(cutoff, 1e-6)
    np.testing.assert_allclose(result.delta, deltas, rtol=1e-4, atol=1e-4 * scale)  # float32 tiles: float32 precision


@pytest.mark.parametrize("case", CASES)
def test_densities_deltas_and_cutoff_match_the_reference(case):
    features = CASES[case]
    result = class_density(features, DensityOptions(), tile=128)  # several tiles, a partial last one
    assert result.exact
    assert_like_reference(features, result)


@pytest.mark.parametrize("case", ["clusters", "integer grid (many equal distances)", "70% duplicates"])
def test_the_float64_path_matches_the_reference_too(case, monkeypatch):
    """With too small a budget for the float32 filter's candidates, the float64 path (histogram
    narrowing of the cutoff, counting pass) takes over, and must give the same answer."""
    features = CASES[case]
    result = class_density(features, DensityOptions(), tile=64, budget=600)
    assert result.path == "float64"
    assert_like_reference(features, result)


def test_subsets_match_the_reference_end_to_end():
    for seed in range(3):
        features = clustered(900, 40, 10 + seed, outliers=0.3)
        subsets, _, _, _ = reference_curriculum(features, random_state=seed)
        result = class_density(features, DensityOptions(seed=seed), tile=256)
        np.testing.assert_array_equal(kmeans_subsets(result.density, 3, seed), subsets)


def test_a_missed_bracket_is_retried_and_stays_exact(monkeypatch):
    """A sample that brackets d_c badly (forced here) costs a wider bracket or the float64 path, never exactness."""
    features = CASES["clusters"]
    real = density_core.bracket
    monkeypatch.setattr(density_core, "bracket", lambda sample, p, sigmas: real(sample, min(p * 1.3, 0.99), sigmas / 50))
    result = class_density(features, DensityOptions(), tile=128)
    assert result.path == "float64"  # every float32 bracket missed; the float64 path widened its own
    assert_like_reference(features, result)


def test_approximate_mode_with_every_sample_as_anchor_is_exact():
    features = CASES["clusters"]
    result = class_density(features, DensityOptions(mode="approximate", anchors=10_000), tile=128)
    assert not result.exact
    densities, _, cutoff = reference_density(features)
    assert result.cutoff == pytest.approx(cutoff, rel=1e-6)
    assert np.abs(result.density - densities).max() <= 1  # float32 near d_c, nothing more


def test_approximate_mode_keeps_most_subsets():
    features = clustered(3000, 16, 5, outliers=0.25)
    exact = class_density(features, DensityOptions(), tile=512)
    approx = class_density(features, DensityOptions(mode="approximate", anchors=600), tile=512)
    assert np.corrcoef(exact.density, approx.density)[0, 1] > 0.97
    agree = (kmeans_subsets(exact.density) == kmeans_subsets(approx.density)).mean()
    assert agree > 0.85
    assert np.isfinite(approx.delta).all() and (approx.delta >= 0).all()


def test_auto_mode_switches_on_class_size():
    features = CASES["clusters"]
    assert class_density(features, DensityOptions(mode="auto", exact_max=len(features))).exact
    assert not class_density(features, DensityOptions(mode="auto", exact_max=len(features) - 1, anchors=100)).exact


def test_class_groups_fit_the_memory_and_a_big_class_stands_alone():
    sizes = {0: 10, 1: 10, 2: 50, 3: 5, 4: 5}
    assert class_groups(sizes, dim=1, group_bytes=100) == [[0, 1], [2], [3, 4]]
    assert class_groups(sizes, dim=1, group_bytes=1e9) == [[0, 1, 2, 3, 4]]


# -- the command on a dataset root -----------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A private copy of the noisy root with checkpoint features."""
    import shutil

    source, synth = noisy_root(tmp_path_factory)
    root = tmp_path_factory.mktemp("density") / "root"
    shutil.copytree(source, root)
    embed(root, ModelSpec(model=str(trained_checkpoint(tmp_path_factory))), name="tiny", loader_workers=0)
    return root, synth


def class_features(root, name="tiny"):
    root = Root(root)
    shards = root.shard_names("train")
    labels = np.concatenate([pl.read_parquet(root.meta_path(s), columns=["label"])["label"].to_numpy() for s in shards])
    feats = np.concatenate([sidecars.read_features(root, name, s, mmap=False) for s in shards]).astype(np.float32)
    return labels, feats


def test_the_command_writes_per_shard_scores_equal_to_the_reference(embedded, tmp_path, wv_cli, last_json):
    import shutil

    root = shutil.copytree(embedded[0], tmp_path / "root")
    result = wv_cli("score", "density", root, "--json", "--memory-gb", "0.0001")  # one class per group
    assert result.exit_code == 0, result.output
    figures = last_json(result.stdout)
    assert figures["classes"] == 6 and figures["exact"] == 6 and figures["shards_written"] == 8 and figures["features"] == "tiny"
    scores = sidecars.read_scores(Root(root), "density", split="train").collect()
    assert scores.columns == ["__key__", "density", "delta", "cutoff", "shard"]
    assert scores.schema["density"] == pl.Int32
    labels, features = class_features(root)
    for label in range(6):
        mine = scores.filter(pl.Series(labels == label))
        densities, deltas, cutoff = reference_density(features[labels == label])
        np.testing.assert_array_equal(mine["density"].to_numpy(), densities.astype(np.int64))
        np.testing.assert_allclose(mine["cutoff"].to_numpy(), cutoff, rtol=1e-6)
        np.testing.assert_allclose(mine["delta"].to_numpy(), deltas, rtol=1e-3, atol=1e-4 * cutoff)
    assert not (Root(root).path / "scores" / "density" / "_classes").exists()


def test_densities_separate_planted_noise(embedded, tmp_path):
    import shutil

    root = shutil.copytree(embedded[0], tmp_path / "root")
    score_density(root, DensityOptions(), progress=False)
    truth = truth_by_shard_order(root, embedded[1])
    scores = sidecars.read_scores(Root(root), "density", split="train").collect()
    from image_data import auroc

    assert auroc(-scores["density"].to_numpy().astype(float), truth["is_noisy"].to_numpy()) > 0.9  # measured 0.98


def test_a_killed_run_resumes_from_finished_classes(embedded, tmp_path, monkeypatch):
    import shutil

    root = shutil.copytree(embedded[0], tmp_path / "root")
    real, calls = density_module.class_density, []

    def dies_on_the_third_class(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(density_module, "class_density", dies_on_the_third_class)
    with pytest.raises(KeyboardInterrupt):
        score_density(root, DensityOptions(), progress=False)
    assert len(list((root / "scores" / "density" / "_classes").glob("*.parquet"))) == 2
    monkeypatch.setattr(density_module, "class_density", real)
    figures = score_density(root, DensityOptions(), progress=False)
    assert figures["classes_resumed"] == 2 and figures["classes_done"] == 4
    resumed = sidecars.read_scores(Root(root), "density", split="train").collect()
    fresh_root = shutil.copytree(embedded[0], tmp_path / "fresh")
    score_density(fresh_root, DensityOptions(), progress=False)
    assert resumed.equals(sidecars.read_scores(Root(fresh_root), "density", split="train").collect())
    again = score_density(root, DensityOptions(), progress=False)
    assert again["shards_written"] == 0 and again["shards_skipped"] == 8


def test_bad_input_is_one_sentence_and_exit_2(embedded, tmp_path, wv_cli):
    import shutil

    root = shutil.copytree(embedded[0], tmp_path / "root")
    shutil.copytree(root / "features" / "tiny", root / "features" / "other")
    result = wv_cli("score", "density", root)
    assert result.exit_code == 2 and "several feature sets (other, tiny); choose one with --features" in result.stderr
    result = wv_cli("score", "density", root, "--features", "nope")
    assert result.exit_code == 2 and "no features named 'nope'" in result.stderr
    next((root / "features" / "other").glob("train-*.npy")).unlink()
    result = wv_cli("score", "density", root, "--features", "other")
    assert result.exit_code == 2 and "missing or incomplete" in result.stderr
    result = wv_cli("score", "density", root, "--features", "tiny", "--quantile", "1.5")
    assert result.exit_code == 2 and "--quantile must be a fraction" in result.stderr
    assert wv_cli("score", "density", root, "--features", "tiny").exit_code == 0
    result = wv_cli("score", "density", root, "--features", "tiny", "--quantile", "0.5")
    assert result.exit_code == 2 and "other options (quantile)" in result.stderr
    assert wv_cli("score", "density", root, "--features", "tiny", "--quantile", "0.5", "--overwrite").exit_code == 0
    shutil.rmtree(root / "features")
    result = wv_cli("score", "density", root)
    assert result.exit_code == 2 and "has no image features; make them first with `wv embed" in result.stderr


def test_features_that_are_not_finite_are_refused(embedded, tmp_path, wv_cli):
    import shutil

    root = shutil.copytree(embedded[0], tmp_path / "root")
    for shard in Root(root).shard_names("train"):
        features = sidecars.read_features(Root(root), "tiny", shard, mmap=False)
        if shard == "train-000004":
            features[7, 3] = np.nan
        sidecars.write_features(Root(root), "broken", shard, features)
    result = wv_cli("score", "density", root, "--features", "broken")
    assert result.exit_code == 2 and "hold NaN or inf; re-run `wv embed --overwrite`" in result.stderr


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_classes_in_a_worker_pool_give_the_same_scores(embedded, tmp_path, mode):
    """Densities and cutoffs bit for bit; deltas, from float32 tiles whose last bits depend on the BLAS
    thread count (1 per worker here, 2 in one process), to float32 rounding."""
    import shutil

    opts = DensityOptions(mode=mode, anchors=40)
    roots = {workers: shutil.copytree(embedded[0], tmp_path / f"workers-{workers}") for workers in (1, 2)}
    for workers, root in roots.items():
        figures = score_density(root, opts, device="cpu", memory_gb=0.0001, workers=workers, progress=False)
        assert figures["classes_done"] == 6 and figures["shards_written"] == 8
    one, two = (sidecars.read_scores(Root(roots[w]), "density", split="train").collect() for w in (1, 2))
    assert one.select("__key__", "density", "cutoff", "shard").equals(two.select("__key__", "density", "cutoff", "shard"))
    np.testing.assert_allclose(two["delta"].to_numpy(), one["delta"].to_numpy(), rtol=1e-4)


def test_a_worker_pool_is_refused_on_a_gpu_device(embedded, tmp_path, wv_cli):
    result = wv_cli("score", "density", embedded[0], "--workers", "2", "--device", "cuda")
    assert result.exit_code == 2
    assert "compute classes on CPU" in result.output and len(result.output.strip().splitlines()) == 1
