"""Finding tfmot's pruning wrappers in a model, without importing tfmot.

`wrap` refuses a tfmot-pruned model and tfmot_interop converts one; both need
to recognise tfmot's wrappers, and tfmot_interop itself builds on `wrap`, so
the recognising lives here, below both.
"""
from tflottery.errors import ConfigError


def _is_tfmot_wrapper(layer) -> bool:
    # By class name, so that checking a model never imports tfmot.
    return any(cls.__name__ == "PruneLowMagnitude"
               and cls.__module__.startswith("tensorflow_model_optimization")
               for cls in type(layer).__mro__)


def tfmot_wrappers(model):
    """The tfmot pruning wrappers (PruneLowMagnitude) anywhere in `model`."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if _is_tfmot_wrapper(layer)]


def refuse_tfmot_model(model, action: str) -> None:
    """One-line ConfigError if `model` holds tfmot pruning wrappers (they hide its layers)."""
    if tfmot_wrappers(model):
        raise ConfigError(
            f"{action} got a tfmot-pruned model (prune_low_magnitude wrappers); convert it "
            f"with tflottery.masking.from_tfmot(model), which keeps tfmot's masks")
