"""tflottery.callbacks with model.fit, and the README's IMP-with-fit example.

Sparsity is checked on the stored weights (exact zeros), the schedule
against Zhu & Gupta's formula written out here, the summaries read back
with TensorFlow's event reader.
"""
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tflottery import callbacks, masking
from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.masking import Mask

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    model = masking.wrap(keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden)))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n=80):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 12)).astype(np.float32), rng.integers(0, 3, n)


def _pruned_values(model):
    mask = masking.get_mask(model)
    return {n: v.numpy()[~mask[n]] for n, v in masking.prunable_variables(model).items()}


def test_keep_pruned_zero_under_stale_momentum():
    x, y = _data()
    rng = np.random.default_rng(1)
    runs = {}
    for use_callback in (False, True):
        model = _model()
        model.fit(x, y, batch_size=10, verbose=0)   # momentum builds up, densely
        mask = Mask({n: rng.random(v.shape) < 0.5
                     for n, v in masking.prunable_variables(model).items()})
        masking.set_mask(model, mask)              # same optimizer: stale momentum
        model.fit(x, y, batch_size=10, verbose=0,
                  callbacks=[callbacks.KeepPrunedZero()] if use_callback else [])
        runs[use_callback] = _pruned_values(model)
    # Without the callback the stale momentum moves pruned weights off zero...
    assert any(np.any(v != 0) for v in runs[False].values())
    # ...with it they are exactly zero (and +0.0).
    for values in runs[True].values():
        assert values.size and np.all(values == 0) and not np.any(np.signbit(values))


def test_gradual_pruning_follows_the_schedule_and_keeps_exact_zeros(tmp_path):
    x, y = _data()                                # 8 steps per epoch at batch 10
    model = _model()
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(model.optimizer.iterations.numpy())
            seen[step] = masking.get_mask(model)
            assert all(np.all(v == 0) for v in _pruned_values(model).values()), step

    model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=[
        callbacks.GradualPruning(final_sparsity=0.75, begin_step=2, end_step="2ep",
                                 frequency=4, power=3),
        callbacks.SparsitySummaries(str(tmp_path)), Probe()])
    # Pruning happens before the batches at steps 2, 6, 10, 14 and 16 (= 2 epochs).
    sizes = {"hidden/kernel": 12 * 16, "out/kernel": 16 * 3}
    for step in (2, 6, 10, 14, 16):
        target = 0.75 + (0.0 - 0.75) * (1 - (step - 2) / (16 - 2)) ** 3   # Zhu & Gupta
        mask = seen[step + 1]     # the mask after that step's batch
        for name, size in sizes.items():
            assert abs(mask[name].sum() - (1 - target) * size) <= 1, (step, name)
    assert seen[24] == seen[17]   # nothing pruned after end_step

    logged = {}
    for path in glob.glob(str(tmp_path / "train" / "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                logged[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    final = masking.get_mask(model)
    assert logged[("density/total", 0)] == 1.0
    assert logged[("density/total", 24)] == pytest.approx(final.density)
    assert logged[("density/out/kernel", 24)] == pytest.approx(final["out/kernel"].mean())


def test_pruning_due_before_the_first_batch_happens_at_train_begin(caplog):
    """begin_step 0: the first pruning is done in on_train_begin, before any batch
    hook, so Keras' batch-hook timing check sees cheap hooks and does not warn that
    on_train_batch_begin "is slow compared to the batch time" (it did, twice)."""
    x, y = _data(400)
    model = _model()
    at_first_batch = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            at_first_batch.setdefault("density", masking.get_mask(model).density)

    gradual = callbacks.GradualPruning(initial_sparsity=0.5, final_sparsity=0.75,
                                       begin_step=0, end_step="1ep", frequency=20)
    gradual.on_train_batch_begin = lambda batch, logs=None: None     # only train begin prunes
    with caplog.at_level("WARNING", logger="tensorflow"):
        model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[gradual, Probe()])
    assert at_first_batch["density"] == pytest.approx(0.5, abs=0.01)
    # Unpatched, the whole fit: no slow-hook warning about on_train_batch_begin.  (Only
    # begin: the end hook zeroes pruned weights after every batch, a call that can take
    # longer than a batch of this tiny network on a loaded machine, and Keras then warns.)
    with caplog.at_level("WARNING", logger="tensorflow"):
        _model().fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[
            callbacks.GradualPruning(final_sparsity=0.9, begin_step=0, end_step="1ep",
                                     frequency=20)])
    assert not [r for r in caplog.records if "is slow compared" in r.getMessage()
                and "on_train_batch_begin" in r.getMessage()]


def test_gradual_pruning_settings_are_checked():
    with pytest.raises(ConfigError, match="unknown settings sparsity"):
        callbacks.GradualPruning(sparsity=0.5)
    model = _model()
    x, y = _data(20)
    with pytest.raises(ConfigError, match="begin_step < end_step"):
        model.fit(x, y, verbose=0, callbacks=[callbacks.GradualPruning(begin_step=5, end_step=5)])
    unknown_length = tf.data.Dataset.from_generator(
        lambda: iter([(x[:10], y[:10])]), output_signature=(
            tf.TensorSpec((None, 12), tf.float32), tf.TensorSpec((None,), tf.int64)))
    with pytest.raises(ConfigError, match="steps per epoch"):
        model.fit(unknown_length, verbose=0, callbacks=[callbacks.GradualPruning(end_step="1ep")])


def _readme_example() -> str:
    text = open(README).read()
    match = re.search(r"<!-- imp-with-fit -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no IMP-with-fit example"
    return match.group(1)


def test_readme_imp_with_fit_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_readme_example(), "README.md:imp-with-fit", "exec"), namespace)
    model, mask = namespace["model"], namespace["mask"]
    # Three levels of 20% of the remaining: 0.8**3 of the weights, counted exactly.
    sizes = {n: v.size for n, v in masking.get_mask(model).items()}
    expected = sum(sizes.values())
    for _ in range(3):
        expected -= int(np.floor(0.2 * expected + 0.5))
    assert mask.num_remaining == expected and masking.get_mask(model) == mask
    # The last level trained under that mask; its pruned weights are exactly zero.
    assert all(np.all(v == 0) for v in _pruned_values(model).values())
