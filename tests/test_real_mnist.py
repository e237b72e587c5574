"""LeNet-300-100 on real MNIST digits (the 10k test set split 8,000 / 2,000),
3,000 Adam steps at 1.2e-3, batch 60, through the same runner as the CLI.
About 15 s on 2 CPUs, so it runs by default; skipped when ../shared is absent."""
import gin
import pytest

from tflottery import gin_files, runner


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_lenet_reaches_95_percent_on_real_mnist(tmp_path, mnist_dir):
    gin_files.parse(["lenet_mnist_local.gin"], [f"DatasetHparams.data_dir = '{mnist_dir}'"])
    result = runner.run(str(tmp_path))
    assert result["step"] == 3000
    assert result["test_accuracy"] >= 0.95, result
