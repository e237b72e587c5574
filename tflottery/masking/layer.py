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
from tflottery.keras_compat import MASK_DTYPE, TF_KERAS, api_of, keras, mask_values
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
        """Sets the inner layer's weights to weight*mask; returns {attribute: original weight}
        (none swapped where Keras only infers the output: _infers_output_signature_only)."""
        originals = {}
        if _infers_output_signature_only():
            return originals
        given = fast_path.given(self)
        try:
            for attr in self.prunable_attrs:
                holder = self._holder(attr)
                weight = getattr(self.layer, holder)
                originals[holder] = weight
                if holder in given:     # computed once for a whole pass (eval_path.py)
                    masked = given[holder]
                else:
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

    def masked_weights(self) -> dict:
        """{holder: weight*mask} of the prunable weights that the inner layer computes with
        in their stored dtype, for eval_path.py; a weight its call reads autocast to
        another dtype (mixed precision) is left out: its product is the call's."""
        out = {}
        for attr in self.prunable_attrs:
            holder = self._holder(attr)
            weight = getattr(self.layer, holder)
            if tf.as_dtype(weight.dtype) == tf.as_dtype(self.layer.compute_dtype):
                out[holder] = self._api.masked_value(weight, self.mask_variable(attr))
        return out

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

    def save_own_variables(self, store):
        """Each mask as packed bits (`<attr>_mask_bits`), 1/8 of its bool variable's size.

        Why: both Kerases' `.keras` loaders read the weights file through a
        zip member stream, and tf_keras's seeks in it by reading again from
        the start of the member, so loading time grows with the file's size
        times the number of reads.  Float32 masks (before masks were bool,
        keras_compat.MASK_DTYPE) doubled the size of a wrapped model's file
        and so its loading time (2.5-3x an unwrapped ResNet-50's); as bits
        they add ~3%.
        """
        for attr in self.prunable_attrs:
            mask = np.asarray(self.mask_variable(attr))
            _put(store, f"{attr}_mask_bits", np.packbits(mask.ravel()))

    def load_own_variables(self, store):
        """Reads what save_own_variables wrote, or a file saved before it: masks as
        "0", "1", ... (float32), or a `<attr>_mask` entry (float32) for a mask that was
        not all 0/1; a float mask that is not all 0/1 is refused (mask_values)."""
        if "0" in store:
            super().load_own_variables({key: mask_values(store[key], f"mask {key} of {self.name}")
                                        for key in store.keys()})
            return
        for attr in self.prunable_attrs:
            variable = self.mask_variable(attr)
            if f"{attr}_mask_bits" in store:
                size = int(np.prod(variable.shape))
                bits = np.unpackbits(np.asarray(store[f"{attr}_mask_bits"]), count=size)
                value = bits.astype(MASK_DTYPE).reshape(tuple(variable.shape))
            else:
                value = mask_values(store[f"{attr}_mask"], f"mask {attr!r} of {self.name}")
            variable.assign(value)


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

    def __new__(cls, layer=None, *args, **kwargs):
        if cls is Masked and getattr(_plain, "depth", 0) > 0:
            return layer
        api = api_of(layer)
        if cls is Masked and api is not TF_KERAS:
            return api.masked_class(layer, *args, **kwargs)
        return super().__new__(cls)


def _put(store, key: str, value: np.ndarray) -> None:
    """store[key] = value; in an HDF5 group, the data is written after the name is linked in.

    Why: tf_keras' `.keras` loader reads the weights file through a zip
    member stream whose every backward seek reads the member again from its
    start (Python < 3.12), so a load costs about the sum of the offsets it
    seeks back to.  `group[key] = value` places the data before the group's
    name table (allocated when the first name is linked), so looking the
    mask up and then opening it seeks back over the data: one re-read of the
    file up to this layer per wrapped layer, 1.5 of the 6.8 GB a wrapped
    ResNet-50's load read (the unwrapped one: 5.3 GB).  Created empty first,
    HDF5 allocates the data only when it is written, after the name table,
    so reading the mask moves forward only (5.7 GB).  Same datasets, names
    and values either way: files load with any version.
    """
    create = getattr(store, "create_dataset", None)  # h5py.Group; a dict or Keras 3's store: no
    if create is None or value.size == 0:
        store[key] = value
        return
    create(key, shape=value.shape, dtype=value.dtype)[...] = value


def _infers_output_signature_only() -> bool:
    """Whether this call runs in tf_keras' scratch graph, where Keras only infers the
    output's shape and dtype (building a functional model, loading one, and
    compute_output_shape): weight*mask has the weight's shape and dtype, so the mask
    is not applied there.

    Why: those mask ops (the mask captured, read, cast, multiplied) were 2.5 ms of
    graph building per wrapped layer, 0.13 s of a wrapped ResNet-50's 2.1 s `.h5`
    load.  Where tf_keras names the graph otherwise, the mask is applied: slower,
    never wrong.
    """
    return getattr(tf.compat.v1.get_default_graph(), "name", "").endswith("_scratch_graph")


def _call_params(layer):
    """(names of layer.call's parameters, whether it takes **kwargs)."""
    sig = inspect.signature(layer.call)
    names = {p.name for p in sig.parameters.values()}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw
