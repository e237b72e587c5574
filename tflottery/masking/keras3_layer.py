"""`KerasMasked`: the masking wrapper as a Keras 3 layer, in keras.ops only.

It is the same wrapper as `Masked` (layer.py: MaskedMixin), on Keras 3's
`layers.Wrapper`; the mask variable and the forward multiply come from the
Keras 3 adapter (keras_compat.KerasApi), written with keras.ops, so the
layer runs on any Keras 3 backend.  Users write `masking.Masked(layer)`
with a Keras 3 layer and get this class.

Registered as serializable ("tflottery>Masked"), so `model.save('m.keras')`
and `keras.models.load_model` keep the masks (they are weights of the
layer, saved as bits: layer.py).  How it gets registered without `import
tflottery` importing Keras 3 (which tf_keras users should not pay for):
`import tflottery` registers a post-import hook on `keras`
(wrapt.register_post_import_hook, the library TensorFlow itself depends
on), and one on `tf_keras` for layer.py.  The hook imports this module right
after `keras` finishes importing, or at once if Keras 3 is already imported,
so in a new process `import keras; import tflottery` and `import tflottery;
import keras` both register the layer before `keras.models.load_model` runs.
The hook fires only once Keras 3 (and the TensorFlow it imports) are fully
imported, so it never imports this module while they are half-initialised.

Why a constraint too.  The forward multiply gives pruned weights exactly
zero gradients, but Keras 3's `model.fit` takes any optimizer: momentum or
Adam state left from before pruning, or an optimizer that mixes entries,
would still move a pruned weight.  Keras 3 optimizers apply every
variable's `constraint` after each update (on every backend), so each
masked weight gets `KeepPruned`, which multiplies the updated weight by
the mask (after the weight's own constraint, if it had one): pruned
weights are exactly 0.0 after every step, whatever the optimizer did.

On JAX the optimizer step runs where the model's non-trainable variables
(the masks) cannot be read (the trainer hands the optimizer only the
trainable and optimizer state), so there the constraint multiplies by a
host copy of the mask, taken whenever the mask is set (`sync_host_masks`:
on build, load and masking.set_mask, which also drops the model's traced
train function so the next fit traces with the new mask).
"""
import numpy as np

from tflottery.keras_compat import MASK_DTYPE, keras3_api
from tflottery.masking.layer import MaskedMixin

_API = keras3_api()
keras = _API.keras


class KeepPruned(keras.constraints.Constraint):
    """weight -> inner(weight) * mask, applied by the optimizer after each update.

    `mask` is the mask variable; `host` a NumPy copy of it, used where the
    variable cannot be read inside the optimizer step (JAX; module docstring).
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner
        self.host = None

    def __call__(self, weight):
        value = weight if self.inner is None else self.inner(weight)
        value = keras.ops.convert_to_tensor(value)
        mask = self.mask if keras.backend.backend() == "tensorflow" else self.host
        return keras.ops.multiply(value, keras.ops.cast(mask, value.dtype))

    def get_config(self):
        # Not serialised: KerasMasked.build attaches it again on load.
        return {}


@keras.utils.register_keras_serializable(package="tflottery", name="Masked")
class KerasMasked(MaskedMixin, keras.layers.Wrapper):
    """Wraps a Keras 3 `layer`; each weight in `prunable_attrs` is used as weight*mask.

    Arguments as `masking.Masked`.
    """

    _api = _API

    def build(self, input_shape=None):
        super().build(input_shape)  # the inner layer and the masks (MaskedMixin)
        for attr in self.prunable_attrs:
            weight = getattr(self.layer, attr)
            if not isinstance(weight.constraint, KeepPruned):
                weight.constraint = KeepPruned(self.mask_variable(attr), weight.constraint)
            # All ones, as the new mask variable; not read from it, because a
            # symbolic build (Keras 3 tracing a subclassed model) cannot.
            weight.constraint.host = np.ones(tuple(weight.shape), MASK_DTYPE)

    def mask_changed(self) -> None:
        self.sync_host_masks()

    def sync_host_masks(self):
        """Copy the mask variables into their constraints' host copies (see module docstring)."""
        for attr in self.prunable_attrs:
            constraint = getattr(self.layer, attr).constraint
            constraint.host = keras.ops.convert_to_numpy(self.mask_variable(attr))

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.sync_host_masks()
