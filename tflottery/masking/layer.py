"""`Masked`: a layer wrapper that multiplies prunable weights by a 0/1 mask.

The mask is applied in the forward pass (`weight * mask`), rather than being
assigned into the weights once, so the gradient of every pruned weight is
exactly zero by construction: no optimizer step, momentum or weight decay
term computed from the gradient can revive a pruned connection.  The mask is
a non-trainable variable, so it is checkpointed with the model, mirrored
under a tf.distribute strategy, and only ever changed between training
phases (see `tflottery.masking.set_mask`).

tflottery's own training step skips the multiply: its optimizer keeps pruned
weights at exactly zero instead, which is cheaper (see fast_path.py).
"""
import inspect
from typing import Optional, Sequence

import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.keras_compat import keras
from tflottery.masking import fast_path
from tflottery.masking.prunable import prunable_attrs as _default_attrs
from tflottery.masking.prunable import stable_name


@keras.utils.register_keras_serializable(package="tflottery")
class Masked(keras.layers.Wrapper):
    """Wraps `layer`; each weight named in `prunable_attrs` is used as weight*mask.

    Args:
      layer: the tf_keras layer to wrap (e.g. a Dense or Conv2D).
      prunable_attrs: attribute names of `layer` holding prunable weights
        (default: looked up in `PRUNABLE_WEIGHTS`).
      **kwargs: passed to `keras.layers.Layer` (name defaults to
        "masked_" + layer.name; dtype defaults to the inner layer's policy so
        mixed precision casts inputs and weights exactly as the inner layer
        itself would).

    The mask of attribute `attr` is the variable `self.<attr>_mask` and is
    known everywhere else by the stable name f"{layer.name}/{attr}".
    """

    def __init__(self, layer, prunable_attrs: Optional[Sequence[str]] = None, **kwargs):
        attrs = tuple(prunable_attrs) if prunable_attrs else _default_attrs(layer)
        if not attrs:
            raise ConfigError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no prunable weights; "
                "pass prunable_attrs=('kernel',) or similar")
        kwargs.setdefault("name", f"masked_{layer.name}")
        # The wrapper's __call__ (not the inner one) sets up autocasting, so it
        # must use the inner layer's compute dtype.
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.prunable_attrs = attrs
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._inner_call_params = _call_params(layer)

    def build(self, input_shape=None):
        super().build(input_shape)  # builds the inner layer
        for attr in self.prunable_attrs:
            weight = getattr(self.layer, attr, None)
            if not isinstance(weight, tf.Variable):
                raise ConfigError(
                    f"layer {self.layer.name!r} has no weight variable {attr!r} to mask")
            mask = self.add_weight(
                name=f"{attr}_mask",
                shape=weight.shape,
                dtype=tf.float32,
                initializer="ones",
                trainable=False,
                # Masks change only in cross-replica context; if anything ever
                # assigns in a replica, all replicas hold the same value anyway.
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                # Keep it a plain float32 variable; it is cast to the weight's
                # read dtype in call().
                experimental_autocast=False,
            )
            setattr(self, f"{attr}_mask", mask)

    def mask_variable(self, attr: str) -> tf.Variable:
        return getattr(self, f"{attr}_mask")

    @property
    def stable_names(self):
        """{attr: stable weight name}, e.g. {'kernel': 'dense_1/kernel'}."""
        return {attr: stable_name(self.layer, attr) for attr in self.prunable_attrs}

    def call(self, inputs, training=None, **kwargs):
        params, takes_var_kw = self._inner_call_params
        if "training" in params or takes_var_kw:
            kwargs["training"] = training
        if not takes_var_kw:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        originals = {}
        try:
            for attr in self.prunable_attrs:
                weight = getattr(self.layer, attr)
                originals[attr] = weight
                # Converting an AutoCastVariable inside __call__ yields the
                # compute dtype (e.g. bfloat16); the mask follows that dtype.
                value = tf.convert_to_tensor(weight)
                if fast_path.active():
                    masked = value     # pruned entries are 0.0 already
                else:
                    masked = value * tf.cast(self.mask_variable(attr), value.dtype)
                # object.__setattr__ bypasses Keras attribute tracking, which
                # would otherwise untrack the variable and re-append it on
                # restore, reordering the inner layer's weights.
                object.__setattr__(self.layer, attr, masked)
            return self.layer.call(inputs, **kwargs)
        finally:
            for attr, weight in originals.items():
                object.__setattr__(self.layer, attr, weight)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = super().get_config()
        config["prunable_attrs"] = list(self.prunable_attrs)
        return config


def _call_params(layer):
    """(names of layer.call's parameters, whether it takes **kwargs)."""
    sig = inspect.signature(layer.call)
    names = {p.name for p in sig.parameters.values()}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw
