"""What every experiment is given, and the helpers they share."""
import dataclasses
import typing

import tensorflow as tf

from tflottery import data, masking, models
from tflottery.errors import ConfigError, first_few
from tflottery.hparams import DatasetHparams, ModelHparams, TrainingHparams, check_value
from tflottery.keras_compat import keras
from tflottery.runs import layout


@dataclasses.dataclass
class RunContext:
    """One replicate of one configured run."""

    strategy: tf.distribute.Strategy
    run_dir: str            # root_dir/<experiment>_<hash>
    replicate: int
    dataset_hp: DatasetHparams
    model_hp: ModelHparams
    training_hp: TrainingHparams
    dataset: "data.Dataset"
    writable: bool = True   # always True from runner (every worker has its own tree)
    prunable_names: tuple = ()  # the mask's weight names (see prunable_weight_shapes)
    # What the run builds once and every phase reuses (training programs,
    # analysis models): shared by the copies dataclasses.replace makes, so an
    # experiment that drives another's stages (lmc of a lottery run) shares it.
    cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def replicate_dir(self) -> str:
        return layout.replicate_dir(self.run_dir, self.replicate)

    @property
    def model_seed(self) -> int:
        hp = self.training_hp
        return hp.model_seed if hp.model_seed is not None else self.replicate

    @property
    def data_seed(self) -> int:
        hp = self.training_hp
        return hp.data_seed if hp.data_seed is not None else self.replicate


def set_precision_policy(training_hp: TrainingHparams) -> None:
    """Global Keras dtype policy: bfloat16 compute when mixed precision is asked for."""
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if training_hp.mixed_precision else "float32")


# ctx.cache key of the run's {mask weight name: shape} (see prunable_weight_shapes).
PRUNABLE_SHAPES = ("prunable_shapes",)


def prunable_weight_shapes(model_hp: ModelHparams, info) -> dict:
    """{mask weight name: shape}, from a throwaway build of the network for this data.

    The runner calls it before anything is written, so a model that cannot
    be built for the data (unknown option, an option of the wrong type,
    images too small) or an unmasked layer that the model does not have
    fails cleanly, as one line.
    """
    options_cls = getattr(models.REGISTRY.get(model_hp.name), "options_cls", None)
    if dataclasses.is_dataclass(options_cls):   # unknown names: the build says which exist
        hints = typing.get_type_hints(options_cls)
        for key, value in dict(model_hp.options).items():
            if key in hints:
                check_value(f"ModelHparams.options[{key!r}]", value, hints[key])
    try:
        plain = models.build(model_hp.name, tuple(info.input_shape), info.num_classes, seed=0,
                             **dict(model_hp.options))
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"model {model_hp.name!r} cannot be built with ModelHparams.options = "
                          f"{dict(model_hp.options)!r} ({reason}); fix the options") from None
    variables = masking.prunable_variables(plain)
    layers = sorted({n.split("/")[0] for n in variables})
    unknown = [name for name in model_hp.unmasked_layers if name not in layers]
    if unknown:
        raise ConfigError(f"ModelHparams.unmasked_layers names {', '.join(map(repr, unknown))}, "
                          f"not a prunable layer of {model_hp.name!r}; choose from: "
                          f"{', '.join(layers)}")
    unmasked = set(model_hp.unmasked_layers)
    return {n: tuple(v.shape) for n, v in variables.items() if n.split("/")[0] not in unmasked}


def build_masked_model(ctx: RunContext, seed: int = None):
    """The configured network, wrapped with masks, created under the strategy scope."""
    set_precision_policy(ctx.training_hp)
    info = ctx.dataset.info
    with ctx.strategy.scope():
        plain = models.build(ctx.model_hp.name, tuple(info.input_shape), info.num_classes,
                             seed=ctx.model_seed if seed is None else seed,
                             **dict(ctx.model_hp.options))
        return masking.wrap(plain, unmasked_layers=tuple(ctx.model_hp.unmasked_layers))


def hold_lock(ctx: RunContext, run_dir: str) -> None:
    """Lock `run_dir` for this process until the run ends (runs/lock.py), once.

    The runner locks the run's own directory; an experiment that writes into
    another run's directory (lmc's IMP subnetworks, in the lottery run) locks
    that one too.  The runner releases them all at the end.
    """
    from tflottery.runs.lock import RunLock
    locks = ctx.cache.setdefault("locks", {})
    if ctx.writable and run_dir not in locks:
        lock = RunLock(run_dir, wait=ctx.cache.get("wait_for_lock", False))
        lock.acquire()
        locks[run_dir] = lock


def training_program(ctx: RunContext, training_hp: TrainingHparams = None):
    """The run's TrainingProgram for `training_hp` (default: the run's), built on first use.

    Every phase of the run with these training settings trains its one model
    with its traced functions (training/program.py); the model starts out
    holding W0, the initialisation of the run's model seed.
    """
    from tflottery.training.program import TrainingProgram
    hp = training_hp or ctx.training_hp
    key = ("program", hp)
    if key not in ctx.cache:
        ctx.cache[key] = TrainingProgram(ctx.strategy, build_masked_model(ctx), ctx.dataset, hp)
    return ctx.cache[key]


def pretrain(ctx: RunContext, out: str, end_step: int, phase_name: str = "pretrain") -> None:
    """Train the run's model from W0 to `end_step` in the phase directory `out`, once.

    The training to a rewinding or pruning step k that lottery, lmc and pai
    runs start from.  A finished phase is skipped (checked whole once per
    process: a damaged one is set aside and trained again); the caller loads
    the weights it needs from `out`'s checkpoints.  `phase_name` is the name
    the experiment's plan gives it, and its steps count into the run's ETA.
    """
    from tflottery.training import run_log
    from tflottery.training.loop import Trainer, finished_result
    key = ("pretrained", out)
    if ctx.cache.get(key):
        return
    if finished_result(out) is None:
        program = training_program(ctx)
        program.load_initial_weights()
        Trainer(ctx.strategy, program.model, ctx.dataset, ctx.training_hp, ctx.data_seed, out,
                end_step=end_step, writable=ctx.writable, program=program,
                phase_name=phase_name, run_log=run_log.of(ctx)).run()
    ctx.cache[key] = True


def load_fresh_initialisation(ctx: RunContext, model, seed: int) -> None:
    """Put the configured network's initialisation for `seed` into `model` (all variables).

    The weights come from a throwaway build outside the strategy (no traced
    function, nothing on the device but the assignment), so a fresh sample of
    the initializers does not need a new training program.
    """
    from tflottery.training.program import assign_values, variable_values
    set_precision_policy(ctx.training_hp)
    info = ctx.dataset.info
    plain = models.build(ctx.model_hp.name, tuple(info.input_shape), info.num_classes,
                         seed=seed, **dict(ctx.model_hp.options))
    fresh = masking.wrap(plain, unmasked_layers=tuple(ctx.model_hp.unmasked_layers))
    assign_values(model, variable_values(fresh))


def load_or_make_mask(ctx: RunContext, directory: str, make, statistics: bool = False):
    """The mask saved in `directory`, or `make()` saved there.

    A damaged mask.npz is set aside and made again (runs/damage.py); a
    damaged sparsity.json (or statistics.json) beside a good mask is set
    aside and rewritten from the mask.  statistics=True also writes the
    per-layer statistics (pruning.save_statistics), before the mask, whose
    file marks the step as done.
    """
    from tflottery import pruning
    from tflottery.runs import damage, io
    mask = damage.read_output(layout.file(directory, masking.MASK_FILENAME),
                              lambda _: masking.Mask.load(directory))
    if mask is None:
        mask = make()
        if ctx.writable:
            if statistics:
                pruning.save_statistics(mask, directory)
            mask.save(directory)
        return mask
    if ctx.writable:
        report = layout.file(directory, masking.REPORT_FILENAME)
        if damage.read_output(report, io.read_json) is None:
            io.atomic_write_json(report, mask.report())
        stats = layout.file(directory, pruning.STATISTICS_FILENAME)
        if statistics and damage.read_output(stats, io.read_json) is None:
            pruning.save_statistics(mask, directory)
    return mask


def weights_named_by(key: str, weight_names) -> list:
    """The weight names a user's key means: itself ('output/kernel') or all of a layer's ('output')."""
    return [w for w in weight_names if w == key or w.split("/")[0] == key]


def layer_fractions_by_weight(hp, weight_names) -> dict:
    """PruningHparams.layer_fractions with layer-name keys ('output') expanded to weight names
    ('output/kernel'); shared by the lottery levels and their branches."""
    out = {}
    for key, value in dict(hp.layer_fractions).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0.0 <= value < 1.0:
            raise ConfigError(f"PruningHparams.layer_fractions[{key!r}] = {value!r} is not a "
                              f"fraction in [0, 1) (0 excludes the layer); fix the gin binding")
        matches = weights_named_by(key, weight_names)
        if not matches:
            raise ConfigError(f"layer_fractions names {key!r}, which is not a prunable layer; "
                              f"choose from: {first_few(sorted(weight_names))}")
        out.update({w: float(value) for w in matches})
    return out


def excluded_weights(layer_names, weight_names):
    """Weight names ('output/kernel') of the excluded layer names ('output')."""
    out = []
    for layer in layer_names:
        matches = weights_named_by(layer, weight_names)
        if not matches:
            raise ConfigError(f"excluded layer {layer!r} is not a prunable layer; choose from: "
                              f"{', '.join(sorted(weight_names))}")
        out.extend(matches)
    return out
