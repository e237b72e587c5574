"""What every experiment is given, and the helpers they share.

`RunContext` is one replicate of one configured run; `RunState` is what the
run builds once and every phase reuses (training programs, locks, the run's
log).  `train_phase` is the one way an experiment trains a phase: the run's
training program for the TrainingHparams, the run's data seed, its log and
writability come from the context, so a phase names only what differs
(where it writes, from which step, its name).
"""
import dataclasses
import typing
from typing import Dict, Optional, Set

import tensorflow as tf

from tflottery import data, masking, models
from tflottery.errors import ConfigError, first_few
from tflottery.hparams import DatasetHparams, ModelHparams, TrainingHparams, check_value
from tflottery.keras_compat import keras
from tflottery.pruning.names import weights_named_by
from tflottery.runs import layout
from tflottery.training import stored_weights
from tflottery.training.phases import validate_training
from tflottery.training.run_log import RunLog


@dataclasses.dataclass(eq=False)
class RunState:
    """What one run builds once and every phase reuses.

    A RunContext holds it by reference, so the copies that
    dataclasses.replace makes share it: an experiment that drives another's
    stages with a replaced context (lmc runs a lottery run's levels) shares
    its training programs, locks and log.
    """

    hparams_record: Optional[dict] = None   # the run's hparams.json record (runner.prepare)
    # {mask weight name: shape}, from the runner's throwaway build of the
    # network (see prunable_weight_shapes); None outside a runner-started run.
    prunable_shapes: Optional[Dict[str, tuple]] = None
    run_log: Optional[RunLog] = None   # None outside a runner-started run
    wait_for_lock: bool = False             # --wait_for_lock: wait for a locked run directory
    locks: dict = dataclasses.field(default_factory=dict)     # run dir -> RunLock held
    programs: dict = dataclasses.field(default_factory=dict)  # TrainingHparams -> TrainingProgram
    pretrained: Set[str] = dataclasses.field(default_factory=set)  # phase dirs done this process


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
    # The mask's weight names (see prunable_weight_shapes); None when the network cannot be
    # built (a dry run of a dataset of unknown size has no input shape): layer names in the
    # settings are then not checked, and the dry run says so.
    prunable_names: Optional[tuple] = ()
    state: RunState = dataclasses.field(default_factory=RunState, repr=False, compare=False)

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

    def total_steps(self, training_hp: Optional[TrainingHparams] = None) -> int:
        """The training length of `training_hp` (default: the run's) in iterations of this
        data; ConfigError if the training settings do not fit it (so `validate` calls it)."""
        return validate_training(training_hp or self.training_hp,
                                 self.dataset.iterations_per_epoch).total


def set_precision_policy(training_hp: TrainingHparams) -> None:
    """Global Keras dtype policy: bfloat16 compute when mixed precision is asked for."""
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if training_hp.mixed_precision else "float32")


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


def initialisation_recipe(ctx: RunContext, seed: int) -> dict:
    """How to build the configured network's initialisation for `seed` again (a named
    checkpoint of it records this instead of its tensors: training/stored_weights.py)."""
    return {"model": ctx.model_hp.name, "input_shape": list(ctx.dataset.info.input_shape),
            "num_classes": ctx.dataset.info.num_classes, "seed": int(seed),
            "options": dict(ctx.model_hp.options),
            "unmasked_layers": list(ctx.model_hp.unmasked_layers)}


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
    locks = ctx.state.locks
    if ctx.writable and run_dir not in locks:
        lock = RunLock(run_dir, wait=ctx.state.wait_for_lock)
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
    programs = ctx.state.programs
    if hp not in programs:
        programs[hp] = TrainingProgram(ctx.strategy, build_masked_model(ctx), ctx.dataset, hp,
                                       initialisation=initialisation_recipe(ctx, ctx.model_seed))
    return programs[hp]


def train_phase(ctx: RunContext, out: str, phase_name: str, start_step: int = 0,
                end_step: Optional[int] = None, training_hp: Optional[TrainingHparams] = None,
                data_seed: Optional[int] = None, extra_checkpoints=(), mask_hook=None) -> dict:
    """Train the run's model (the training program's, holding the phase's starting weights
    and mask) for one phase in `out`; returns its final.json result.

    The one place a phase's Trainer is built: the phase trains with
    `training_hp` (default: the run's) in that setting's training program,
    with `data_seed` (default: the run's), the run's log and writability;
    extra_checkpoints and mask_hook are the Trainer's.  A finished phase
    returns its stored result, a killed one resumes (Trainer.run).
    """
    from tflottery.training.loop import Trainer
    hp = training_hp or ctx.training_hp
    program = training_program(ctx, hp)
    return Trainer(ctx.strategy, program.model, ctx.dataset, hp,
                   ctx.data_seed if data_seed is None else data_seed, out,
                   start_step=start_step, end_step=end_step,
                   extra_checkpoints=extra_checkpoints, writable=ctx.writable,
                   mask_hook=mask_hook, program=program, phase_name=phase_name,
                   run_log=ctx.state.run_log).run()


def pretrain(ctx: RunContext, out: str, end_step: int, phase_name: str = "pretrain") -> None:
    """Train the run's model from W0 to `end_step` in the phase directory `out`, once.

    The training to a rewinding or pruning step k that lottery, lmc and pai
    runs start from.  A finished phase is skipped (checked whole once per
    process: a damaged one is set aside and trained again); the caller loads
    the weights it needs from `out`'s checkpoints.  `phase_name` is the name
    the experiment's plan gives it, and its steps count into the run's ETA.
    """
    from tflottery.training.loop import finished_result
    if out in ctx.state.pretrained:
        return
    if finished_result(out) is None:
        training_program(ctx).load_initial_weights()
        train_phase(ctx, out, phase_name, end_step=end_step)
    ctx.state.pretrained.add(out)


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
    values = variable_values(fresh)
    assign_values(model, values)
    stored_weights.note_initialisation(model, initialisation_recipe(ctx, seed), values)


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


def layer_fractions_by_weight(hp, weight_names) -> dict:
    """PruningHparams.layer_fractions with layer-name keys ('output') expanded to weight names
    ('output/kernel'); shared by the lottery levels and their branches.  `weight_names` None
    (the network's names are not known: a dry run without data) checks the values only."""
    out = {}
    for key, value in dict(hp.layer_fractions).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0.0 <= value < 1.0:
            raise ConfigError(f"PruningHparams.layer_fractions[{key!r}] = {value!r} is not a "
                              f"fraction in [0, 1) (0 excludes the layer); fix the gin binding")
        if weight_names is None:
            continue
        matches = weights_named_by(key, weight_names)
        if not matches:
            raise ConfigError(f"layer_fractions names {key!r}, which is not a prunable layer; "
                              f"choose from: {first_few(sorted(weight_names))}")
        out.update({w: float(value) for w in matches})
    return out
