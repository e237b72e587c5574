"""Mask statistics (per-layer density, neuron collapse), checked by hand."""
import numpy as np
import pytest

from tflottery.masking import Mask
from tflottery.pruning import mask_statistics, save_statistics
from tflottery.runs import io


def test_layer_densities_and_dead_layers():
    mask = Mask({"a/kernel": np.array([[1, 0], [0, 0]], bool),      # 1 of 4 kept
                 "b/kernel": np.zeros((3, 2), bool),                 # fully pruned
                 "c/kernel": np.ones((2, 2, 1, 3), bool)})           # conv, dense
    stats = mask_statistics(mask)
    assert stats["layers"]["a/kernel"] == {"size": 4, "kept": 1, "density": 0.25}
    assert stats["layers"]["b/kernel"]["kept"] == 0
    assert stats["layers"]["c/kernel"]["density"] == 1.0
    assert stats["fully_pruned_layers"] == ["b/kernel"]
    assert stats["density"] == pytest.approx((1 + 0 + 12) / (4 + 6 + 12))


def test_neuron_collapse_by_hand():
    # Dense kernel [in=4, out=3]: unit 0 keeps 4/4 (sparsity 0), unit 1 keeps 1/4
    # (sparsity 0.75), unit 2 keeps 0/4 (sparsity 1.0: dead).
    kernel = np.zeros((4, 3), bool)
    kernel[:, 0] = True
    kernel[2, 1] = True
    # Conv kernel [1, 2, 1, 2]: channel 0 keeps 1/2 (0.5), channel 1 keeps 2/2 (0).
    conv = np.array([[[[True, True]], [[False, True]]]])
    stats = mask_statistics(Mask({"d/kernel": kernel, "c/kernel": conv}))
    assert stats["thresholds"][:3] == [0, 1, 2] and stats["thresholds"][-1] == 100
    curve = stats["neuron_collapse"]["d/kernel"]
    assert curve[0] == 1.0                      # every unit has sparsity >= 0
    assert curve[50] == pytest.approx(2 / 3)    # units 1 and 2
    assert curve[75] == pytest.approx(2 / 3)    # 0.75 counts at 75%
    assert curve[76] == pytest.approx(1 / 3)
    assert curve[100] == pytest.approx(1 / 3)   # the dead unit
    conv_curve = stats["neuron_collapse"]["c/kernel"]
    assert conv_curve[50] == 0.5 and conv_curve[51] == 0.0
    network = stats["network_neuron_collapse"]  # 5 units: sparsities 0, .75, 1, .5, 0
    assert network[50] == pytest.approx(3 / 5) and network[100] == pytest.approx(1 / 5)


def test_saved_beside_the_mask(tmp_path):
    mask = Mask({"a/kernel": np.array([True, False])})
    save_statistics(mask, str(tmp_path / "m"))
    saved = io.read_json(str(tmp_path / "m" / "statistics.json"))
    assert saved["layers"]["a/kernel"]["kept"] == 1
    assert saved["neuron_collapse"]["a/kernel"][100] == 0.5   # 1-d: one unit per entry
