"""The hyperparameters of a run, as frozen dataclasses bound from gin.

Everything that can change a result is a field of one of these classes, so
that the run directory can be named by a hash of these values (see
`tflottery.runs.naming`).  Fields equal to their defaults are left out of the
hash: adding a new option with a default does not rename old runs.  The hash
and hparams.json name a class by its bare name (`PruningHparams`), never by
its module, and gin binds it by that name too.  Step quantities are strings
such as '90ep' or '500it' (see `tflottery.steps.Step`).

This module holds what every hyperparameter class shares: the `Checked`
base (type and range checks at construction) and the classes that every
experiment reads (dataset, model, training, experiment name, summary).  A
class that configures one experiment lives beside it (PruningHparams in
experiments/lottery.py, PaiHparams in experiments/pai.py, GradualHparams in
pruning/gradual.py, which the `fit` callbacks share...), so that adding an
experiment does not touch this file.  `classes()` lists them all and
`tflottery.hparams.<Name>` finds any of them by name once its module is
imported (reports and gin look classes up by bare name).
"""
import dataclasses
import math
import typing
from typing import Optional, Tuple

import gin

from tflottery.errors import ConfigError
from tflottery.steps import Step


# A step quantity written as text ('90ep', '500it', '2ep10it'; tflottery.steps):
# checked to parse when its dataclass is built, so a typo names its field.
StepText = typing.NewType("StepText", str)

# The largest integer any field takes: every count, size and seed of a run
# fits in int32 (seeds and the offsets derived from them stay well inside
# the int64 that TensorFlow's random ops take; more examples, alphas or
# scoring rounds than this cannot fit in memory or time anyway).
MAX_INT = 2 ** 31 - 1


class Checked:
    """Type and range checks for gin-bound values, at construction (before
    anything is written): a string where a number belongs (or the reverse), a
    negative number, an integer beyond MAX_INT or a float that is not finite
    becomes a one-line ConfigError instead of a traceback deep inside
    training.  No field of these classes takes a negative number; finer
    ranges (fractions below 1, names that exist) are checked by whoever
    uses the field, also before anything is written."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            check_value(f"{type(self).__name__}.{field.name}", getattr(self, field.name),
                        hints[field.name])


def check_value(name: str, value, annotation) -> None:
    """ConfigError unless `value` fits `annotation` and is in range (see Checked);
    `name` is what the message calls it ('TrainingHparams.lr').  Also used for
    the model options of ModelHparams.options, whose types live in tflottery.models."""
    where = f"{name} = {value!r}"
    if not _fits(value, annotation):
        raise ConfigError(f"{where} is not of type {type_name(annotation)}; "
                          f"fix the gin binding")
    for number in _numbers(value):
        problem = _out_of_range(number)
        if problem:
            raise ConfigError(f"{where}: {problem}; fix the gin binding")
    for text in _step_texts(value, annotation):
        try:
            Step.parse(text)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def _numbers(value):
    """The numbers in a field's value (itself, or the elements of a tuple; not dict
    entries, which their users check)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _out_of_range(number) -> str:
    """Why a number cannot be a hyperparameter, or ''."""
    if isinstance(number, float) and not math.isfinite(number):
        return f"{number} is not a finite number"
    if number < 0:
        return "must not be negative"
    if isinstance(number, int) and number > MAX_INT:
        return f"more than the limit {MAX_INT} (2**31 - 1) of every count, size and seed"
    return ""


def _step_texts(value, annotation) -> list:
    """The step strings of a value whose annotation mentions StepText (every string
    in it: the field itself, or a tuple's elements)."""
    def mentions(a) -> bool:
        return a is StepText or any(mentions(arg) for arg in typing.get_args(a))
    if not mentions(annotation):
        return []
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [v for v in items if isinstance(v, str)]


def _fits(value, annotation) -> bool:
    if hasattr(annotation, "__supertype__"):     # a NewType such as StepText
        return _fits(value, annotation.__supertype__)
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        return any(_fits(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (tuple, typing.Tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (tuple, list)) and all(
            any(_fits(v, a) for a in args) for v in value) if args else isinstance(value, tuple)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def type_name(annotation) -> str:
    if hasattr(annotation, "__supertype__"):
        return type_name(annotation.__supertype__)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace(f"{__name__}.StepText", "str")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetHparams(Checked):
    """Which data, how it is batched and augmented.

    name: a dataset registered in `tflottery.data` ('digits', 'mnist',
      'mnist_local', 'cifar10', ...).
    batch_size: the global batch size, split across replicas.
    data_dir: where tfds (or a local source) finds the data; a gs:// path on TPU.
    augment: apply the dataset's training augmentation (CIFAR: pad-4 crop + flip).
    holdout_fraction: fraction of the training set held out as validation
      data (0.1 for the early-stopping metric of thesis 3.3.6), chosen with a
      fixed seed so that it is the same in every run.
    num_train_examples: use only the first N (shuffled with a fixed seed)
      training examples; None uses them all.
    image_size: side of the square model inputs of a streamed dataset
      (imagenet2012: crops are resized to image_size x image_size); None is
      the dataset's own default (224 for imagenet2012; Inception-v3 uses 299).
      In-memory datasets keep their stored size and reject it.
    normalization: pixel scaling of a streamed dataset: None or 'mean_std'
      (its RGB mean and std; Google's reference TPU ResNet-50), or
      'inception' (pixels / 127.5 - 1, in [-1, 1]; the reference
      Inception-v3).  In-memory datasets keep their own and reject it.
    """

    name: str = "digits"
    batch_size: int = 60
    data_dir: Optional[str] = None
    augment: bool = True
    holdout_fraction: float = 0.0
    num_train_examples: Optional[int] = None
    image_size: Optional[int] = None
    normalization: Optional[str] = None


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelHparams(Checked):
    """Which network and which of its weights carry masks.

    name: a model registered in `tflottery.models` ('lenet_300_100', 'resnet_20', ...).
    options: keyword arguments for the model family (e.g. {'bn_momentum': 0.9}).
    unmasked_layers: names of prunable layers that get no mask (never pruned).
    """

    name: str = "lenet_300_100"
    options: dict = dataclasses.field(default_factory=dict)
    unmasked_layers: Tuple[str, ...] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainingHparams(Checked):
    """How to train: optimizer, schedule, length, regularisation, bookkeeping.

    optimizer: 'sgd' (with `momentum`, `nesterov`) or 'adam'.
    lr: the base learning rate (the peak after warmup).
    momentum: SGD's momentum (0: plain SGD; Adam ignores it).
    nesterov: SGD with Nesterov momentum.
    schedule: 'constant', 'step' (x `gamma` at each of `milestones`) or
      'linear' (linear decay from lr to `final_lr` at the end of training).
    milestones: the steps where the 'step' schedule multiplies the rate by gamma.
    gamma: the factor of the 'step' schedule at each milestone.
    final_lr: the rate the 'linear' schedule reaches at the end of training.
    warmup: linear warmup from 0 to lr over this many steps ('0it': none).
    training_steps: total length of training, e.g. '160ep' or '63000it'.
    weight_decay: adds weight_decay * sum(w^2) / 2 over all trainable weights
      except BatchNorm's (biases included, as in Google's reference TPU ResNet).
    label_smoothing: label smoothing of the cross-entropy.
    aux_loss_weight: weight of the cross-entropy of an auxiliary classifier
      (a model's outputs after the first, e.g. Inception-v3's aux head) in
      the training loss; 0.4 as in Google's reference TPU Inception-v3.
      Models with a single output ignore it.
    mixed_precision: compute in bfloat16 with float32 variables and logits.
    dilation: scales every step quantity of the run (thesis 3.3.6).
    eval_every: evaluate on the test set at this interval (and at the end).
    checkpoint_steps: extra steps at which to keep a named checkpoint
      (the 'init' and 'end' checkpoints are always kept).
    steps_per_loop: training steps inside one tf.function call.
    xla_update: compile the optimizer update of each weight with at least
      4096 entries (and the re-zeroing of its pruned entries) with XLA on
      CPUs and GPUs, which makes masks nearly free and the update faster
      (training/masked_updates.py); False keeps the plain TensorFlow ops,
      which agree to float rounding.  TPUs compile the whole step anyway.
    data_seed / model_seed: override the seeds derived from the replicate.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    milestones: Tuple[StepText, ...] = ()
    gamma: float = 0.1
    final_lr: float = 0.0
    warmup: StepText = "0it"
    training_steps: StepText = "1ep"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    aux_loss_weight: float = 0.4
    mixed_precision: bool = False
    dilation: float = 1.0
    eval_every: StepText = "1ep"
    checkpoint_steps: Tuple[StepText, ...] = ()
    steps_per_loop: int = 100
    xla_update: bool = True
    data_seed: Optional[int] = None
    model_seed: Optional[int] = None


def non_default_fields(hparams) -> dict:
    """The fields of a hparams dataclass whose values differ from the defaults."""
    out = {}
    for field in dataclasses.fields(hparams):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        value = getattr(hparams, field.name)
        if value != default:
            out[field.name] = value
    return out


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ExperimentHparams(Checked):
    """Which experiment runs.

    name: a registered experiment ('train', 'lottery', 'lmc', 'pai', 'dst',
      'dynamic_imp', ...; `--list` shows them all).
    """

    name: str = "train"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SummaryHparams(Checked):
    """How results are judged (not part of the run's hash).

    matching_tolerance: a subnetwork is *matching* when its mean test accuracy
      is at most this many percentage points below the dense network's.
    stability_threshold: training from a state is *stable* when the test
      error barrier between two copies is below this many points.
    """

    matching_tolerance: float = 0.2
    stability_threshold: float = 2.0


def classes() -> list:
    """Every hyperparameter class defined so far (subclasses of Checked), in definition order:
    those of this module, and those beside their experiments once these are imported."""
    out, todo = [], list(Checked.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in out:
            out.append(cls)
            todo.extend(cls.__subclasses__())
    return [cls for cls in out if dataclasses.is_dataclass(cls)]


def __getattr__(name: str):
    """`tflottery.hparams.PruningHparams`: a class that lives beside its experiment, by its
    bare name, as gin and reports know it; found among `classes()` without importing
    anything (this module must not depend on the experiments)."""
    for cls in classes():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (a hyperparameter "
                         f"class that lives beside its experiment is found here once its "
                         f"module is imported: import tflottery.experiments first)")
