"""The Keras 3 library on the JAX backend, in a subprocess with KERAS_BACKEND=jax (#17).

Keras picks its backend once per process, so the checks run in a child
Python; skipped where jax is not installed (it is not a dependency).
"""
import importlib.util
import os
import subprocess
import sys

import pytest

CHECKS = r'''
import numpy as np
import keras
from tflottery import masking, scoring
from tflottery.errors import ConfigError
from tflottery.masking import Mask

assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
x_in = keras.Input((6, 6, 2))
h = keras.layers.Conv2D(3, 3, name="conv")(x_in)
h = keras.layers.BatchNormalization(name="bn")(h)
h = keras.layers.Flatten()(h)
plain = keras.Model(x_in, keras.layers.Dense(4, name="head")(h))
model = masking.wrap(plain)
x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32)
y = rng.integers(0, 4, 16)
np.testing.assert_allclose(np.asarray(model(x)), np.asarray(plain(x)), rtol=1e-6, atol=1e-6)

# Masked Dense against NumPy.
layer = masking.Masked(keras.layers.Dense(3))
a = rng.normal(size=(5, 4)).astype(np.float32)
layer(a)
m = rng.random((4, 3)) < 0.5
layer.kernel_mask.assign(m.astype(np.float32))
w, b = np.asarray(layer.layer.kernel.numpy()), np.asarray(layer.layer.bias.numpy())
np.testing.assert_allclose(np.asarray(layer(a)), a @ (w * m) + b, rtol=1e-5, atol=1e-5)

# Magnitude and random pruning; pruned weights stay 0.0 through fit (stale optimizer state too).
for opt in (keras.optimizers.SGD(0.05, momentum=0.9), keras.optimizers.AdamW(0.01, weight_decay=0.1)):
    masking.set_mask(model, Mask.ones_like(model))
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    mask = scoring.prune_to_density("magnitude", model, 0.4)
    assert mask.num_remaining == round(0.4 * mask.num_weights)
    assert scoring.prune_to_density("random", model, 0.4, seed=1) != mask
    masking.set_mask(model, mask)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for name, var in masking.prunable_variables(model).items():
        value = np.asarray(var.numpy())
        assert np.all(value[~mask[name]] == 0.0), name
        assert np.mean(value[mask[name]] != 0.0) > 0.5, name

# Export and save/load.
exported = masking.export(model)
assert not masking.masked_layers(exported)
np.testing.assert_allclose(np.asarray(exported(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
model.save(PATH)
loaded = keras.models.load_model(PATH)
assert masking.get_mask(loaded) == mask

# Scorers that differentiate need the TensorFlow backend: one line saying so.
try:
    scoring.compute_scores("snip", model, (x, y))
except ConfigError as error:
    assert "TensorFlow backend" in str(error) and "\n" not in str(error), error
else:
    raise AssertionError("snip ran on the JAX backend")
print("jax checks passed")
'''


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (pip install 'jax[cpu]' to run the Keras 3 "
                           "JAX-backend checks)")
def test_library_on_the_jax_backend(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax")
    script = f"PATH = {str(tmp_path / 'm.keras')!r}\n" + CHECKS
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax checks passed" in result.stdout
