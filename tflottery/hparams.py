"""The hyperparameters of a run, as frozen dataclasses bound from gin.

Everything that can change a result lives here, so that the run directory can
be named by a hash of these values (see `tflottery.runs.naming`).  Fields equal
to their defaults are left out of the hash: adding a new option with a default
does not rename old runs.  Step quantities are strings such as '90ep' or
'500it' (see `tflottery.steps.Step`).
"""
import dataclasses
import math
import typing
from typing import Optional, Tuple, Union

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


class _Checked:
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
    """ConfigError unless `value` fits `annotation` and is in range (see _Checked);
    `name` is what the message calls it ('TrainingHparams.lr').  Also used for
    the model options of ModelHparams.options, whose types live in tflottery.models."""
    where = f"{name} = {value!r}"
    if not _fits(value, annotation):
        raise ConfigError(f"{where} is not of type {_type_name(annotation)}; "
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


def _type_name(annotation) -> str:
    if hasattr(annotation, "__supertype__"):
        return _type_name(annotation.__supertype__)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace(f"{__name__}.StepText", "str")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetHparams(_Checked):
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
class ModelHparams(_Checked):
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
class TrainingHparams(_Checked):
    """How to train: optimizer, schedule, length, regularisation, bookkeeping.

    optimizer: 'sgd' (with `momentum`, `nesterov`) or 'adam'.
    lr: the base learning rate (the peak after warmup).
    schedule: 'constant', 'step' (x `gamma` at each of `milestones`) or
      'linear' (linear decay from lr to `final_lr` at the end of training).
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
class ExperimentHparams(_Checked):
    """Which experiment runs ('train', ...; see `tflottery.experiments`)."""

    name: str = "train"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PruningHparams(_Checked):
    """How IMP prunes after each level (thesis Algorithms 1, 2, 4).

    fraction: fraction of the *remaining* weights removed per level (0.2).
    levels: number of pruning levels after the dense level 0.
    target_sparsity: if set, the levels are as many as needed to reach it
      (or, with one_shot, the single level prunes straight to it).  With an
      N:M scope they are counted from the densities it reaches (N/M or less
      after the first level), and a target below 1 - N/M is refused.
    one_shot: prune to target_sparsity in one level instead of iteratively.
    scope: 'global' (one magnitude ranking over all layers; the thesis),
      'layerwise' (each layer loses its own fraction; Frankle & Carbin 2019),
      or an N:M pattern such as '2:4' (layerwise, at most N of every M
      consecutive input weights kept; the first level already goes to <= N/M;
      tflottery/pruning/n_m.py).
    layer_fractions: per-layer rates, keyed by layer name ('output') or
      weight name ('output/kernel'); 0 excludes a layer from pruning.  Only
      exclusions (0) are allowed with scope 'global'.
    """

    fraction: float = 0.2
    levels: int = 10
    target_sparsity: Optional[float] = None
    one_shot: bool = False
    scope: str = "global"
    layer_fractions: dict = dataclasses.field(default_factory=dict)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LotteryHparams(_Checked):
    """What happens between pruning levels.

    mode: 'rewind' (IMP: survivors go back to their values at rewind_step;
      rewind_step '0it' resets to initialisation) or 'lrr' (learning-rate
      rewinding: keep the trained weights and replay the whole LR schedule).
    rewind_step: the step k of weight rewinding, e.g. '0it', '500it', '2ep'.
    """

    mode: str = "rewind"
    rewind_step: StepText = "0it"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BranchHparams(_Checked):
    """Ablation branches trained from IMP levels (not part of the run's hash:
    adding a branch later reuses the finished IMP levels).

    names: registered branch names (see `tflottery.experiments.branches`).
    levels: the levels to branch from; None means every pruned level.
    data_seed, dilation: settings of the 'retrain' branch.
    """

    names: Tuple[str, ...] = ()
    levels: Optional[Tuple[int, ...]] = None
    data_seed: Optional[int] = None
    dilation: Optional[float] = None


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SummaryHparams(_Checked):
    """How results are judged (not part of the run's hash).

    matching_tolerance: a subnetwork is *matching* when its mean test accuracy
      is at most this many percentage points below the dense network's.
    stability_threshold: training from a state is *stable* when the test
      error barrier between two copies is below this many points.
    """

    matching_tolerance: float = 0.2
    stability_threshold: float = 2.0


@gin.configurable
@dataclasses.dataclass(frozen=True)
class InstabilityHparams(_Checked):
    """Instability analysis (thesis Algorithm 3, chapter 4).

    rewind_steps: the steps k to analyse, e.g. ('0it', '500it', '2ep');
      not hashed, so adding a k extends the same run.
    subnetwork: 'dense'; 'imp' for the IMP subnetworks at `levels` found by
      the lottery run with the same Pruning/LotteryHparams and rewinding to k
      (its masks are reused from that run directory, or made there); or a
      control built from those levels: 'random_reinit' (IMP mask, fresh
      initialisation), 'random_prune_global' or 'random_prune_layerwise'
      (random masks of the same density, rewound weights); or 'independent':
      the copies start from different initialisations (copy i > 0 from model
      seed + 100000 x i; k must be 0), the setting of Entezari et al. and
      Ainsworth et al.; or 'independent_imp': copy i is the IMP subnetwork at
      `levels` of the lottery run's replicate r + 100000 x i (another
      initialisation, its own mask).
    levels: the IMP levels (sparsities) to analyse; not hashed.
    copy_seeds: data-order seeds of the copies (offset by 1000 x replicate):
      two or more; the path is measured between the first two, and the
      uniform average of all of them (a "soup") is evaluated too.
    schedule: 'continue' (train the copies for T - k steps, the LR schedule
      continuing from k) or 'restart' (T steps with the schedule restarted:
      the control of thesis 4.1.2).
    bn_mode: 'recompute' (BatchNorm statistics recomputed for every
      interpolated network; the default) or 'interpolate'.
    num_alphas: points on the linear path, evenly spaced in [0, 1].
    per_epoch: also measure the instability between the copies at every
      epoch of their training (thesis Figure 4-5).
    align: None, or 'weights' / 'activations': also report every curve,
      instability, distance and the soup after permuting copy 2's units to
      match copy 1 (analysis/align.py: weight matching, or correlation of
      activations on training data).
    """

    rewind_steps: Tuple[StepText, ...] = ("0it",)
    subnetwork: str = "dense"
    levels: Tuple[int, ...] = (0,)
    copy_seeds: Tuple[int, ...] = (1, 2)
    schedule: str = "continue"
    bn_mode: str = "recompute"
    num_alphas: int = 30
    per_epoch: bool = False
    align: Optional[str] = None


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PaiHparams(_Checked):
    """Pruning at initialisation or early in training (thesis chapter 5).

    method: a scorer registered in `tflottery.scoring` ('random', 'magnitude',
      'snip', 'grasp', 'grasp_abs', 'synflow', 'isnip',
      'magnitude_unit_variance').
    target_sparsity: fraction of the prunable weights removed, in [0, 1).
    prune_step: the step k at which to score and prune ('0it': at
      initialisation); the network is trained densely from 0 to k first.
    schedule: 'replay' (train the pruned network with the whole learning-rate
      schedule again, from step 0; Renda et al. 2020) or 'continue' (train it
      for the remaining T - k steps; the same thing when k = 0).
    scope: 'global' (one ranking over all layers), 'layerwise' (every
      layer pruned to the target density), or an N:M pattern such as '2:4'
      (layerwise, at most N of every M consecutive input weights kept).
    examples_per_class: the class-balanced batch the data-driven scorers
      (SNIP, GraSP, iterative SNIP) see: examples_per_class x num_classes
      examples (10 x 1000 = 10,000 images on ImageNet).
    chunk_size: the most examples of that batch the data-driven scorers put
      through the model in one forward/backward pass, which bounds their
      memory (None: the whole batch in one pass).  Without BatchNorm the
      scores do not depend on it (up to float rounding); with BatchNorm each
      chunk is normalised by its own statistics (tflottery/scoring/chunks.py).
    iterations: rounds of the iterative scorers (SynFlow, iterative SNIP);
      None keeps their default of 100.
    excluded_layers: layer names never pruned (e.g. ('output',)).
    """

    method: str = "magnitude"
    target_sparsity: float = 0.9
    prune_step: StepText = "0it"
    schedule: str = "replay"
    scope: str = "global"
    examples_per_class: int = 10
    iterations: Optional[int] = None
    excluded_layers: Tuple[str, ...] = ()
    chunk_size: Optional[int] = 256


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PaiAblationHparams(_Checked):
    """Ablations of a network pruned early (thesis 5.4), each trained like it.

    Not part of the run's hash: adding an ablation later reuses the pruned
    network.  names: any of 'shuffle' (each layer's mask shuffled within the
    layer), 'reinit' (same mask, weights from a fresh initialisation), and
    'invert' (prune the weights the method ranks highest instead).
    """

    names: Tuple[str, ...] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GradualHparams(_Checked):
    """Gradual magnitude pruning during training (Zhu & Gupta 2018).

    The sparsity at step t follows tensorflow-model-optimization's
    PolynomialDecay: s_t = final + (initial - final) * (1 - (t - begin) /
    (end - begin))^power between begin_step and end_step, applied every
    `frequency` steps by pruning the lowest-magnitude weights.
    scope: 'layerwise' (every layer at s_t, as tfmot's own pruning does),
    'global', or an N:M pattern such as '2:4' (pruning/n_m.py).
    excluded_layers: layer names never pruned.
    """

    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    begin_step: StepText = "0it"
    end_step: StepText = "1ep"
    power: int = 3
    frequency: StepText = "100it"
    scope: str = "layerwise"
    excluded_layers: Tuple[str, ...] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DstHparams(_Checked):
    """Dynamic sparse training from a sparse start: RigL and SET (experiment 'dst').

    sparsity: fraction of the prunable weights that are zero throughout.
    distribution: how the density spreads over layers: 'erk' (Erdős-Rényi-
      Kernel, RigL's default), 'er' or 'uniform' (pruning/dynamic.py).
    grow: 'gradient' (RigL, Evci et al. 2020: the inactive connections with
      the largest dense-gradient magnitude on the current batch) or 'random'
      (SET, Mocanu et al. 2018).
    update_every: steps between mask updates (RigL's dT: 100 iterations).
    drop_fraction: the fraction alpha of each layer's active weights replaced
      at the first update, decayed by a cosine to 0 at the stop step (0.3).
    stop_fraction: updates stop at this fraction of training (RigL: 0.75).
    dense_layers: layer names kept dense (they count towards the density).
    """

    sparsity: float = 0.9
    distribution: str = "erk"
    grow: str = "gradient"
    update_every: StepText = "100it"
    drop_fraction: float = 0.3
    stop_fraction: float = 0.75
    dense_layers: Tuple[str, ...] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DynamicImpHparams(_Checked):
    """One-shot Dynamic IMP (thesis Algorithm 5, section 6.2.2; experiment 'dynamic_imp').

    sparsity: the sparsity s every phase prunes to, one-shot.
    change_points: n_1 < ... < n_k, each a step ('1500it', '2ep') or a
      fraction of training (0.5: half-way, so one config fits every
      network); phase i covers [n_(i-1), n_i] with n_0 = 0 and n_(k+1) the
      end of training.
    first_mask: how m_1 is chosen: 'imp' (the first phase's dense training
      then magnitude pruning; Algorithm 5), 'random' or 'magnitude_init'
      (magnitude of the initial weights).
    regrow_init: how regrown weights start: 'fresh' (a new sample of the
      layer's initializer), 'zero', or 'previous' (the values they had in the
      network they were pruned from).
    regrow: which pruned weights are regrown between phases: 'all'
      (Algorithm 5), or only as many as the phase kept, chosen by
      'gradient' (RigL's criterion) or at 'random'.
    scope: 'global' or 'layerwise' magnitude pruning.
    excluded_layers: layer names never pruned.
    """

    sparsity: float = 0.9
    change_points: Tuple[Union[StepText, float], ...] = (0.5,)
    first_mask: str = "imp"
    regrow_init: str = "fresh"
    regrow: str = "all"
    scope: str = "global"
    excluded_layers: Tuple[str, ...] = ()
