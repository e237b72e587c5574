"""masking.from_tfmot / to_tfmot: masks and outputs survive the trip both ways.

tfmot's side is exercised with tfmot's own tools (prune_low_magnitude,
UpdatePruningStep, strip_pruning, PruningSummaries); expected masks are
tfmot's mask variables or NumPy comparisons made here.
"""
import glob

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from tflottery import masking
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.masking import Mask

sparsity = tfmot.sparsity.keras


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


def _tfmot_trained(model):
    """A tfmot-pruned model after a few fit steps: tfmot chose its masks (50% per layer)."""
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    return pruned


def _tfmot_masks(model):
    return {f"{w.layer.name}/kernel": w.pruning_vars[0][1].numpy() != 0 for w in model.layers
            if isinstance(w, PruneLowMagnitude) and w.pruning_vars}


def test_from_tfmot_wrapped_keeps_tfmot_masks_and_outputs():
    pruned = _tfmot_trained(_model())
    expected = _tfmot_masks(pruned)
    assert set(expected) == {"conv/kernel", "hidden/kernel", "out/kernel"}
    assert all(0 < m.mean() < 1 for m in expected.values())
    ours = masking.from_tfmot(pruned)
    assert masking.get_mask(ours) == Mask(expected)
    x, _ = _data(8)
    np.testing.assert_allclose(ours(x).numpy(), pruned(x, training=False).numpy(), rtol=1e-6, atol=1e-6)


def test_from_tfmot_stripped_reads_zeros_and_only_wrapped_layers_get_masks():
    model = _model()
    # tfmot prunes only the hidden layer; the others stay unmasked in tflottery too.
    partly = keras.models.clone_model(model, clone_function=lambda layer: sparsity.prune_low_magnitude(
        layer, sparsity.ConstantSparsity(0.5, 0, frequency=1)) if layer.name == "hidden" else layer)
    partly.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    partly.fit(x, y, batch_size=16, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    ours = masking.from_tfmot(partly)
    assert set(masking.get_mask(ours)) == {"hidden/kernel"}

    stripped = sparsity.strip_pruning(partly)
    from_zeros = masking.from_tfmot(stripped)
    kernels = {layer.name: layer.kernel.numpy() for layer in stripped.layers if hasattr(layer, "kernel")}
    assert masking.get_mask(from_zeros) == Mask({f"{n}/kernel": k != 0 for n, k in kernels.items()})
    assert masking.get_mask(from_zeros)["hidden/kernel"].mean() == 0.5


def test_to_tfmot_installs_masks_for_strip_pruning_summaries_and_tflite(tmp_path):
    ours = masking.wrap(_model())
    rng = np.random.default_rng(1)
    mask = Mask({name: rng.random(var.shape) < 0.3
                 for name, var in masking.prunable_variables(ours).items()})
    masking.set_mask(ours, mask)
    theirs = masking.to_tfmot(ours)
    assert Mask(_tfmot_masks(theirs)) == mask
    x, y = _data()
    np.testing.assert_allclose(theirs(x[:8], training=False).numpy(), ours(x[:8]).numpy(),
                               rtol=1e-6, atol=1e-6)

    # tfmot training with its callbacks keeps our masks (KeepMasks never prunes).
    theirs.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    theirs.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir=str(tmp_path))])
    assert Mask(_tfmot_masks(theirs)) == mask
    stripped = sparsity.strip_pruning(theirs)
    assert not any("prune" in layer.name or "masked" in layer.name for layer in stripped.layers)
    for name, keep in mask.items():
        kernel = stripped.get_layer(name.split("/")[0]).kernel.numpy()
        assert np.all(kernel[~keep] == 0) and np.all(kernel[keep] != 0)

    # PruningSummaries logged our sparsity, read back with TensorFlow's event reader.
    logged = {}
    for path in glob.glob(str(tmp_path / "**" / "events.out.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.endswith("/sparsity"):
                    logged[value.tag] = float(tf.make_ndarray(value.tensor))
    assert logged and sorted(logged.values()) == pytest.approx(
        sorted(1 - mask[n].mean() for n in mask), abs=1e-6)

    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    assert len(converter.convert()) > 0


def test_round_trip_through_tfmot_keeps_masks_and_outputs():
    ours = masking.wrap(_model(2), unmasked_layers=["out"])
    rng = np.random.default_rng(2)
    mask = Mask({name: rng.random(var.shape) < 0.5
                 for name, var in masking.prunable_variables(ours).items()})
    masking.set_mask(ours, mask)
    back = masking.from_tfmot(masking.to_tfmot(ours))
    assert masking.get_mask(back) == mask
    x, _ = _data(8)
    np.testing.assert_allclose(back(x).numpy(), ours(x).numpy(), rtol=1e-6, atol=1e-6)


def test_wrap_refuses_a_tfmot_model_in_one_line():
    pruned = sparsity.prune_low_magnitude(_model())
    with pytest.raises(ConfigError, match="from_tfmot") as info:
        masking.wrap(pruned)
    assert "\n" not in str(info.value)
