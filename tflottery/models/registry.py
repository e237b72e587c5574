"""The model registry: a name picks a family builder plus its fixed architecture.

A registered name ('resnet_20', 'wrn_14_8', ...) is a family builder with its
architecture arguments bound (depth, widths).  What a user may still change
is the family's *options* (initializers, BatchNorm settings), collected in a
frozen dataclass per family so that an unknown or misspelt option fails at
once with the list of valid ones, instead of being silently ignored.
"""
import dataclasses
import numbers
from typing import Any, Callable, Dict, Sequence

from tflottery.errors import ConfigError
from tflottery.registry import Registry

REGISTRY = Registry("model")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: `builder(input_shape, num_classes, seed, options, **arch)`."""

    name: str
    builder: Callable[..., Any]
    options_cls: type
    arch: Dict[str, Any]

    def option_names(self) -> Sequence[str]:
        return [f.name for f in dataclasses.fields(self.options_cls)]

    def make_options(self, given: Dict[str, Any]):
        unknown = sorted(set(given) - set(self.option_names()))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for model {self.name!r}; "
                f"valid options: {', '.join(self.option_names())}")
        return self.options_cls(**given)

    def __call__(self, input_shape, num_classes: int, seed: int = 0, **options):
        return build_spec(self, input_shape, num_classes, seed, **options)


def register(name: str, builder: Callable[..., Any], options_cls: type, **arch) -> ModelSpec:
    spec = ModelSpec(name, builder, options_cls, dict(arch))
    REGISTRY.register(name, spec)
    return spec


def _check_args(name, input_shape, num_classes, seed):
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, numbers.Integral) and d > 0 for d in shape):
        raise ConfigError(
            f"model {name!r}: input_shape must be (height, width, channels) of positive ints, "
            f"got {input_shape!r}")
    if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ConfigError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"model {name!r}: seed must be a non-negative int, got {seed!r}")
    return tuple(int(d) for d in shape), int(num_classes), int(seed)


def build_spec(spec: ModelSpec, input_shape, num_classes: int, seed: int = 0, **options):
    shape, num_classes, seed = _check_args(spec.name, input_shape, num_classes, seed)
    opts = spec.make_options(options)
    return spec.builder(shape, num_classes, seed, opts, name=spec.name, **spec.arch)
