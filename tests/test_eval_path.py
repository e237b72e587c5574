"""The evaluation path (masking/eval_path.py): weight*mask computed once for a pass.

A pass with the products computed once must give exactly what a pass that
multiplies at every batch gives, and both what NumPy computes from
weight*mask; the products must leave the loop's body; and where they cannot
be shared (several replicas, mixed precision) the calls multiply as before.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from conftest import two_cpu_strategy  # noqa: E402

from tflottery import masking  # noqa: E402

BATCHES = 4


def _masked_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = masking.wrap(keras.Sequential([
        keras.layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(5, activation="relu"),
        keras.layers.Dense(4)]))
    rng = np.random.RandomState(seed)
    mask = {name: rng.rand(*var.shape) < 0.5
            for name, var in masking.prunable_variables(model).items()}
    masking.set_mask(model, masking.Mask(mask))
    # Pruned entries that are not zero: only the mask keeps them out.
    for var in masking.prunable_variables(model).values():
        var.assign_add(tf.where(var == 0.0, 3.0, 0.0))
    return model


def _images():
    return tf.constant(np.random.RandomState(1).randn(BATCHES, 7, 6, 6, 2).astype(np.float32))


def _pass(model, strategy, once: bool):
    """A traced pass: the model's outputs on BATCHES batches, in a tf.while_loop."""
    images = _images()

    def body(i, out):
        return i + 1, out.write(i, tf.cast(model(images[i], training=False), tf.float32))

    @tf.function(autograph=False)
    def run():
        out = tf.TensorArray(tf.float32, size=BATCHES)
        if once:
            with masking.weights_masked_once(model, strategy):
                return tf.while_loop(lambda i, _: i < BATCHES, body, (0, out))[1].stack()
        return tf.while_loop(lambda i, _: i < BATCHES, body, (0, out))[1].stack()
    return run


def _numpy_outputs(model):
    """The model's outputs from NumPy: conv by explicit sums, weight*mask per layer."""
    conv, _, dense1, dense2 = (layer for layer in model.layers)

    def masked(layer, attr):
        return getattr(layer.layer, attr).numpy() * layer.mask_variable(attr).numpy()
    kernel, bias = masked(conv, "kernel"), conv.layer.bias.numpy()
    outs = []
    for x in _images().numpy():
        y = np.zeros((x.shape[0], 4, 4, 3))
        for i in range(4):
            for j in range(4):
                y[:, i, j, :] = np.einsum("bhwc,hwco->bo", x[:, i:i + 3, j:j + 3, :], kernel) + bias
        h = np.maximum(y, 0).reshape(x.shape[0], -1)
        h = np.maximum(h @ masked(dense1, "kernel") + dense1.layer.bias.numpy(), 0)
        outs.append(h @ masked(dense2, "kernel") + dense2.layer.bias.numpy())
    return np.stack(outs)


def _bool_casts_in_loop_body(concrete) -> int:
    """Casts of a bool tensor (a mask becoming a number) inside the while loop's body."""
    library = concrete.graph.as_graph_def().library
    bodies = {n.attr["body"].func.name for f in [concrete.graph.as_graph_def()]
              for n in f.node if n.op in ("While", "StatelessWhile")}
    return sum(1 for f in library.function if f.signature.name in bodies for n in f.node_def
               if n.op == "Cast" and n.attr["SrcT"].type == tf.bool.as_datatype_enum)


def test_once_equals_every_batch_bit_for_bit_and_numpy():
    model = _masked_model()
    strategy = tf.distribute.get_strategy()
    once = _pass(model, strategy, once=True)().numpy()
    every = _pass(model, strategy, once=False)().numpy()
    np.testing.assert_array_equal(once, every)
    np.testing.assert_allclose(once, _numpy_outputs(model), rtol=1e-5, atol=1e-5)


def test_products_leave_the_loop_body():
    model = _masked_model()
    strategy = tf.distribute.get_strategy()
    once = _pass(model, strategy, once=True).get_concrete_function()
    every = _pass(model, strategy, once=False).get_concrete_function()
    assert _bool_casts_in_loop_body(every) == 3       # one per masked weight, every batch
    assert _bool_casts_in_loop_body(once) == 0


def test_a_mask_changed_between_passes_is_seen():
    """The products are computed at every call of the traced pass, not at its trace."""
    model = _masked_model()
    run = _pass(model, tf.distribute.get_strategy(), once=True)
    before = run().numpy()
    masking.set_mask(model, masking.Mask({n: np.ones(v.shape, bool) for n, v in
                                          masking.prunable_variables(model).items()}))
    after = run().numpy()
    assert not np.array_equal(before, after)
    np.testing.assert_allclose(after, _numpy_outputs(model), rtol=1e-5, atol=1e-5)


def test_several_replicas_multiply_in_the_calls():
    strategy = two_cpu_strategy()
    with strategy.scope():
        model = _masked_model()
    run = _pass(model, strategy, once=True)
    assert _bool_casts_in_loop_body(run.get_concrete_function()) == 3
    np.testing.assert_array_equal(run().numpy(),
                                  _pass(model, strategy, once=False)().numpy())


def test_mixed_precision_leaves_the_product_to_the_call():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _masked_model()
        layer = masking.masked_layers(model)[0]
        assert layer.masked_weights() == {}
        strategy = tf.distribute.get_strategy()
        np.testing.assert_array_equal(_pass(model, strategy, once=True)().numpy(),
                                      _pass(model, strategy, once=False)().numpy())
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_products_serve_only_their_graph_and_graphs_nested_in_it():
    """A call traced in an unrelated graph could not use the pass's tensors: it multiplies."""
    from tflottery.masking import fast_path
    layer = object()
    with tf.Graph().as_default():
        product = tf.constant(1.0)
        with fast_path.masked_weights_given({id(layer): {"kernel": product}}):
            assert fast_path.given(layer) == {"kernel": product}
            assert fast_path.given(object()) == {}

            @tf.function
            def nested():
                assert fast_path.given(layer) == {"kernel": product}
                return tf.constant(0.0)
            nested.get_concrete_function()
            with tf.Graph().as_default():
                assert fast_path.given(layer) == {}
        assert fast_path.given(layer) == {}
