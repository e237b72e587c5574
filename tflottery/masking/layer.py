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

One wrapper for both Kerases: `MaskedMixin` is everything the wrapper does;
`Masked` is it on tf_keras, `KerasMasked` (keras3_layer.py) on Keras 3, the
differences coming from the model's adapter (keras_compat.py).
`Masked(layer)` with a Keras 3 layer returns a KerasMasked, so user code
writes one name.
"""
import contextlib
import functools
import inspect
import threading
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tflottery.errors import ConfigError
from tflottery.keras_compat import TF_KERAS, api_of, keras
from tflottery.masking import fast_path
from tflottery.masking.prunable import prunable_attrs as _default_attrs
from tflottery.masking.prunable import attribute_holding, stable_name

_plain = threading.local()


@contextlib.contextmanager
def plain_layers():
    """`Masked(layer)` returns `layer` itself while active.

    export() rebuilds a subclassed model from its config inside this
    context, so the model's own __init__ builds its plain twin.
    """
    _plain.depth = getattr(_plain, "depth", 0) + 1
    try:
        yield
    finally:
        _plain.depth -= 1


class MaskedMixin:
    """What a masking wrapper does, whichever Keras it is a layer of.

    `Masked` (tf_keras) and `KerasMasked` (Keras 3, keras3_layer.py) are
    this mixin on their Keras' `layers.Wrapper`; the differences (mask
    variable creation, tensor ops) come from the adapter `self._api`
    (keras_compat.KerasApi).  `isinstance(layer, MaskedMixin)` finds both.
    """

    _api = TF_KERAS

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
            if not self._api.is_variable(weight):
                raise ConfigError(
                    f"layer {self.layer.name!r} has no weight variable {attr!r} to mask")
            self._api.add_mask_variable(self, f"{attr}_mask", weight.shape)

    def mask_variable(self, attr: str):
        return getattr(self, f"{attr}_mask")

    def mask_changed(self) -> None:
        """Called by set_mask after it assigned the masks (KerasMasked keeps host copies)."""

    @property
    def stable_names(self):
        """{attr: stable weight name}, e.g. {'kernel': 'dense_1/kernel'}."""
        return {attr: stable_name(self.layer, attr) for attr in self.prunable_attrs}

    def _holder(self, attr: str) -> str:
        """The attribute of the inner layer that stores weight `attr`.

        tf_keras' Dense stores its kernel as `kernel`; Keras 3's as
        `_kernel` behind a `kernel` property.
        """
        name = attribute_holding(self.layer, getattr(self.layer, attr))
        if name is not None:
            return name
        raise ConfigError(f"cannot find where layer {self.layer.name!r} stores {attr!r}")

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None, **kwargs):
        # Not converted by autograph, which tf_keras applies to a user layer's
        # call: transpiling it (and all it calls) took most of a small wrapped
        # model's loading time, and nothing here branches on tensors.  The
        # inner layer's call is converted as it would be alone (_inner_call).
        originals = self._swap_in_masked_weights()
        try:
            return self._inner_call()(inputs, **self._inner_kwargs(training, kwargs))
        finally:
            self._restore_weights(originals)

    def _inner_call(self):
        """The inner layer's call, autograph-converted unless it is Keras' own layer.

        Keras' own layers are never converted (autograph skips the keras and
        tf_keras modules); a user's layer may branch on tensors, as it could
        unwrapped.
        """
        if type(self.layer).call.__module__.split(".")[0] in ("keras", "tf_keras"):
            return self.layer.call
        # to_graph gives the method's function: it takes the layer first.
        return functools.partial(tf.autograph.to_graph(self.layer.call), self.layer)

    @tf.autograph.experimental.do_not_convert
    def _inner_kwargs(self, training, kwargs):
        """The keyword arguments of the inner layer's call: `training` if it takes it."""
        params, takes_var_kw = self._inner_call_params
        if "training" in params or takes_var_kw:
            kwargs = dict(kwargs, training=training)
        if not takes_var_kw:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        return kwargs

    @tf.autograph.experimental.do_not_convert
    def _swap_in_masked_weights(self):
        """Sets the inner layer's weights to weight*mask; returns {attribute: original weight}."""
        originals = {}
        try:
            for attr in self.prunable_attrs:
                holder = self._holder(attr)
                weight = getattr(self.layer, holder)
                originals[holder] = weight
                # On the fast path pruned entries are 0.0 already: no multiply.
                mask = None if fast_path.active() else self.mask_variable(attr)
                masked = self._api.masked_value(weight, mask)
                # object.__setattr__ bypasses Keras attribute tracking, which
                # would otherwise untrack the variable and re-append it on
                # restore, reordering the inner layer's weights.
                object.__setattr__(self.layer, holder, masked)
        except BaseException:
            self._restore_weights(originals)
            raise
        return originals

    @tf.autograph.experimental.do_not_convert
    def _restore_weights(self, originals):
        for holder, weight in originals.items():
            object.__setattr__(self.layer, holder, weight)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = super().get_config()
        config["prunable_attrs"] = list(self.prunable_attrs)
        return config

    # Whether the wrapper's own store entry also holds the inner layer's
    # variables (see `_inner_saved_here`); Keras 3 extracts the weights file
    # before reading it, so KerasMasked keeps Keras' nested layout.
    _saves_inner_layer = False
    _INNER_PREFIX = "layer_"

    def _inner_saved_here(self) -> bool:
        """Whether save/load put the inner layer's variables in this wrapper's entry.

        Why: tf_keras' `.keras` loader reads the weights file through a zip
        member stream and seeks backwards in it by reading again from the
        start of the member, so loading time grows with the number of
        groups it opens.  Nested the Keras way (`masked_x/vars` and
        `masked_x/layer/vars`), a wrapped ResNet-50 had 1.3x the groups of
        the unwrapped one and loaded ~1.3x slower; with one entry per layer
        it has the same groups as the unwrapped model.  Only for an inner
        layer without sublayers, whose state is exactly its own variables.
        """
        layer = self.__dict__.get("layer")  # None while __init__ runs
        if not self._saves_inner_layer or layer is None:
            return False
        return next(iter(layer._flatten_layers(include_self=False, recursive=False)),
                    None) is None

    def __dir__(self):
        # The Keras savers walk dir(layer) for the trackables to visit; the
        # inner layer is left out when this wrapper saves its variables.
        names = super().__dir__()
        return [n for n in names if n != "layer"] if self._inner_saved_here() else names

    def save_own_variables(self, store):
        """Each mask as the fewest bytes that give it back exactly.

        Why: see `_inner_saved_here`; every dataset the loader opens costs a
        read of the file, and float32 masks doubled its size (2.5-3x the
        loading time of an unwrapped ResNet-50).  So, when the wrapper holds
        the inner layer's variables (`layer_0`, `layer_1`, ..., written
        first), a mask that is exactly the weight's nonzero pattern (a
        pruned model: pruned weights are 0, kept ones are not) is not
        stored at all and is read back from the weight.  Any other 0/1 mask
        is stored as packed bits (`<attr>_mask_bits`, 1/32 of float32), and
        one that is not all 0/1 (set by hand) whole (`<attr>_mask`), so
        nothing is lost.
        """
        inner_here = self._inner_saved_here()
        if inner_here:
            inner = {}
            self.layer.save_own_variables(inner)
            for key, value in inner.items():
                store[self._INNER_PREFIX + key] = value
        for attr in self.prunable_attrs:
            mask = np.asarray(self.mask_variable(attr))
            if not np.isin(mask, (0.0, 1.0)).all():
                store[f"{attr}_mask"] = mask
            elif not (inner_here and np.array_equal(mask > 0, self._weight_value(attr) != 0)):
                store[f"{attr}_mask_bits"] = np.packbits(mask.ravel() > 0)

    def _weight_value(self, attr: str) -> np.ndarray:
        return np.asarray(getattr(self.layer, attr))

    def load_own_variables(self, store):
        """Reads what save_own_variables wrote, or a file saved by an earlier version.

        Earlier layouts: masks as "0", "1", ... (Keras' own); or the inner
        layer's variables in its own entry `<this entry>/layer/vars`.
        """
        names = set(store.keys())  # once: each lookup in the store is a read of the file
        if self._inner_saved_here():
            self.layer.load_own_variables(self._inner_store(store, names))
        if "0" in names:
            super().load_own_variables(store)
            return
        for attr in self.prunable_attrs:
            variable = self.mask_variable(attr)
            if f"{attr}_mask_bits" in names:
                size = int(np.prod(variable.shape))
                bits = np.unpackbits(np.asarray(store[f"{attr}_mask_bits"]), count=size)
                value = bits.astype(np.float32).reshape(tuple(variable.shape))
            elif f"{attr}_mask" in names:
                value = np.asarray(store[f"{attr}_mask"], np.float32)
            else:  # the weight's nonzero pattern (see save_own_variables)
                value = (self._weight_value(attr) != 0).astype(np.float32)
            variable.assign(value)

    def _inner_store(self, store, names):
        """The inner layer's variables: `layer_<i>` here, or the nested entry of an older file."""
        prefix = self._INNER_PREFIX
        inner = {k[len(prefix):]: store[k] for k in sorted(names) if k.startswith(prefix)}
        parent = getattr(store, "parent", None)  # an h5py group ".../vars"
        if not inner and parent is not None and "layer" in parent and "vars" in parent["layer"]:
            return parent["layer"]["vars"]
        return inner


@keras.utils.register_keras_serializable(package="tflottery")
class Masked(MaskedMixin, keras.layers.Wrapper):
    """Wraps `layer`; each weight named in `prunable_attrs` is used as weight*mask.

    Args:
      layer: the layer to wrap (e.g. a Dense or Conv2D).  A Keras 3 layer
        gives a Keras 3 wrapper (keras3_layer.KerasMasked), so hand-built
        and subclassed Keras 3 models write `Masked(...)` too.
      prunable_attrs: attribute names of `layer` holding prunable weights
        (default: looked up in `PRUNABLE_WEIGHTS`).
      **kwargs: passed to `keras.layers.Layer` (name defaults to
        "masked_" + layer.name; dtype defaults to the inner layer's policy so
        mixed precision casts inputs and weights exactly as the inner layer
        itself would).

    The mask of attribute `attr` is the variable `self.<attr>_mask` and is
    known everywhere else by the stable name f"{layer.name}/{attr}".
    """

    _saves_inner_layer = True

    def __new__(cls, layer=None, *args, **kwargs):
        if cls is Masked and getattr(_plain, "depth", 0) > 0:
            return layer
        api = api_of(layer)
        if cls is Masked and api is not TF_KERAS:
            return api.masked_class(layer, *args, **kwargs)
        return super().__new__(cls)


def _call_params(layer):
    """(names of layer.call's parameters, whether it takes **kwargs)."""
    sig = inspect.signature(layer.call)
    names = {p.name for p in sig.parameters.values()}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw
