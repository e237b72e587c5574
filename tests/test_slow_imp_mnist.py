"""Slow (pytest -m slow, ~8 min): iterative IMP on LeNet-300-100 with the real
MNIST digits (8,000 / 2,000, 3,000 steps per level), 15 levels plus the
random-reinitialisation and layerwise-random-pruning branches at every level.
The lottery ticket effect: at 10% density and below, IMP beats both
(on average over those levels, and at most of them)."""
import gin
import pytest

from tflottery import gin_files, runner


@pytest.mark.slow
def test_imp_beats_random_baselines_on_real_mnist(tmp_path, mnist_dir):
    gin.clear_config()
    try:
        gin_files.parse(["lenet_mnist_local.gin", "imp.gin"],
                        [f"DatasetHparams.data_dir = '{mnist_dir}'", "PruningHparams.levels = 15"])
        table = runner.run(str(tmp_path))["summary"]
    finally:
        gin.clear_config()
    sparse = [r for r in table["levels"] if r["density"] <= 0.10 + 1e-9]
    assert sparse, "no level reached 10% density"
    # One replicate on 2,000 test images: a level's accuracy is noisy by about one
    # image (0.05 points) and more, so the effect is judged over the sparse levels
    # together (on main at 18a100d, level 12 had IMP 96.50% against random_reinit
    # 96.55%, while IMP won the five other levels, by 0.32 points on average).
    imp = [row["imp"]["mean"] for row in sparse]
    for branch in ("random_reinit", "random_prune_layerwise"):
        other = [row["branches"][branch]["mean"] for row in sparse]
        assert sum(imp) > sum(other), (branch, imp, other)
        wins = sum(a > b for a, b in zip(imp, other))
        assert wins > len(sparse) / 2, (branch, imp, other)
