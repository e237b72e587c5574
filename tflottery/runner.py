"""From parsed gin configuration to a finished run directory.

Order matters for "nothing half-written": every input is validated (names,
numbers, data available, steps inside training) before the run directory is
created; then config.gin, hparams.json and experiment.json (the experiment's
ReportSpec: how reporting reads its runs) are written, the experiment runs
(each of its stages skipping work already done), its declared end-of-run
report is made (ReportSpec.end_of_run: the runner, not the experiment,
imports reporting), and operative_config.gin is written last.

Multi-worker (MultiWorkerMirroredStrategy): every worker runs the whole
experiment in a complete run tree of its own and reads only its own files;
the chief's is under root_dir, another worker's under a sibling root
(`strategy.worker_root`: root_dir.worker_1 and so on).
"""
import importlib
import threading
from typing import Optional

import gin
from absl import logging

from tflottery import data, experiments, hparams_record, models, plan, stop
from tflottery.errors import ConfigError, UnknownSizeError
from tflottery.experiments.context import RunContext, RunState, hold_lock, prunable_weight_shapes
from tflottery.hparams import (MAX_INT, DatasetHparams, ExperimentHparams, ModelHparams,
                               TrainingHparams)
from tflottery.runs import config_file, io, layout, report_spec
from tflottery.runs.naming import run_name
from tflottery.runs.finished import finished_record, write_finished
from tflottery.runs.roots import check_root
from tflottery.training import run_log
from tflottery.training.strategy import build_strategy, worker_root


def build_hparams():
    """(experiment, [ExperimentHparams, DatasetHparams, ModelHparams, TrainingHparams]) of the
    parsed gin configuration, each type-checked, and the names of the experiment and model
    looked up; loads no data (sweeps check every grid point with it before running any)."""
    exp_hp = ExperimentHparams()
    experiment = experiments.REGISTRY.get(exp_hp.name)()
    dataset_hp, model_hp, training_hp = DatasetHparams(), ModelHparams(), TrainingHparams()
    models.REGISTRY.get(model_hp.name)   # fail on an unknown model before loading data
    return experiment, [exp_hp, dataset_hp, model_hp, training_hp]


def configured_hparams() -> list:
    """Every hyperparameter dataclass of the configured run, as configured (the base
    four first, ExperimentHparams leading); loads no data, writes nothing."""
    experiment, base = build_hparams()
    return hparams_record.resolved(base, experiment)


def name_and_record(experiment, base_hparams):
    """(run name, hparams.json record) of a configuration built by build_hparams.

    The name hashes the base and the experiment's hashed dataclasses; the
    record holds every resolved dataclass (sweeps compare it with a run's
    finished.json to know whether that job is done)."""
    name = run_name(base_hparams[0].name, list(base_hparams) + list(experiment.hparams()))
    return name, hparams_record.record(base_hparams[0].name, name,
                                       hparams_record.resolved(base_hparams, experiment))


def prepare(root_dir: str, replicate: int = 0, strategy=None, dry: bool = False):
    """Build hyperparameters, validate them, and return (experiment, RunContext).

    Writes nothing, not even the root: run() creates that once this has
    passed.  ctx.state.hparams_record holds the run's hparams.json record.
    dry: plan without the data (data.plan: the sizes of the registry's
    table); ctx.dataset is then a data.PlannedDataset, and a dataset of
    unknown size (its info None) builds no model and is validated by dry_run.
    """
    if isinstance(replicate, bool) or not isinstance(replicate, int) or \
            not 0 <= replicate <= MAX_INT:
        raise ConfigError(f"--replicate={replicate} is not in [0, {MAX_INT}] (it seeds the "
                          f"model and the data order); choose a smaller replicate number")
    check_root(root_dir, create=False)
    experiment, (exp_hp, dataset_hp, model_hp, training_hp) = build_hparams()
    infeed_dtype = "bfloat16" if training_hp.mixed_precision else "float32"
    dataset = (data.plan if dry else data.build)(dataset_hp, infeed_dtype=infeed_dtype)
    name, record = name_and_record(experiment, [exp_hp, dataset_hp, model_hp, training_hp])
    strategy = strategy if strategy is not None else build_strategy()
    # Every process writes (and so makes the same collective calls): a
    # non-chief worker in its own tree beside root_dir (see worker_root).
    root = worker_root(root_dir, strategy)
    if root != root_dir:
        logging.info("not the chief: this worker's run tree is under %s", root)
    # The network is built (in memory, thrown away) before anything is written:
    # model options, layer names and sizes that depend on it are checked here.
    # (A dry run of a dataset of unknown size has no input shape: no model is built.)
    shapes = None if dataset.info is None else prunable_weight_shapes(model_hp, dataset.info)
    ctx = RunContext(strategy=strategy, run_dir=layout.run_dir(root, name),
                     replicate=replicate, dataset_hp=dataset_hp, model_hp=model_hp,
                     training_hp=training_hp, dataset=dataset, writable=True,
                     prunable_names=None if shapes is None else tuple(shapes),
                     state=RunState(prunable_shapes=shapes))
    ctx.state.hparams_record = record
    if dataset.info is None:
        return experiment, ctx   # dry_run validates, and says so if a step is in epochs
    experiment.validate(ctx)
    return experiment, ctx


def phases(experiment, ctx) -> list:
    """The experiment's plan.Phase list (every registered experiment has one:
    experiments/base.py checks it at registration)."""
    return list(experiment.phases(ctx))


def spec_of(experiment) -> report_spec.ReportSpec:
    """The experiment's ReportSpec (its REPORT); one that declares none is reported by
    its name alone (rows without a method, no end-of-run report)."""
    return getattr(experiment, "REPORT", None) or report_spec.ReportSpec(experiment.name)


def prepare_end_of_run(spec: report_spec.ReportSpec) -> Optional[threading.Thread]:
    """Import the end-of-run hook's module, and call its `prepare()` if it has one, in
    a background thread (started once the run has trained its first steps); returns
    the thread, which the hook's call waits for (they may share matplotlib's state).

    Why: the hook draws figures, and importing matplotlib alone was 0.3-0.4 s of
    a 7-level LeNet job's 10 (#26).  Done while the training loop runs in
    TensorFlow's threads, which hold no Python lock, it is off the job's wall
    time; started with the run, it competed with the first trace instead and
    saved nothing.  The thread only imports: the hook runs after the experiment,
    and a failure here is left for the hook's own call to report.
    """
    if not spec.end_of_run:
        return None

    def warm():
        try:
            module = importlib.import_module(spec.end_of_run.rpartition(".")[0])
            getattr(module, "prepare", lambda: None)()
        except Exception:   # noqa: BLE001 -- the hook's call raises it again, in the open
            pass

    thread = threading.Thread(target=warm, name="prepare_end_of_run", daemon=True)
    thread.start()
    return thread


def end_of_run(spec: report_spec.ReportSpec, ctx, rec: dict, result, writable: bool):
    """Call the experiment's declared end-of-run report, `spec.end_of_run(run_dir,
    settings, writable)`; the summary it returns joins the result as 'summary'."""
    if not spec.end_of_run:
        return result
    module, _, function = spec.end_of_run.rpartition(".")
    hook = getattr(importlib.import_module(module), function)
    summary = hook(ctx.run_dir, hparams_record.flat(rec["hparams"]), writable)
    if summary is None or not isinstance(result, dict):
        return result
    return dict(result, summary=summary)


def describe_start(ctx) -> str:
    """What a run prints first: where it writes and what it was configured with."""
    rec = ctx.state.hparams_record
    settings = hparams_record.describe_non_default(rec)
    return "\n".join([f"run directory: {ctx.replicate_dir}",
                      f"settings that differ from the defaults ({len(settings)}):"]
                     + [f"  {line}" for line in settings])


def describe_data(dataset) -> str:
    """The plan's data line: split sizes and iterations per epoch (or that they are unknown)."""
    info = dataset.info
    if info is None:
        return f"data: size unknown; batch {dataset.batch_size}"
    return (f"data: {info.name!r}, {info.num_train} training, {info.num_holdout} holdout and "
            f"{info.num_test} test examples {tuple(info.input_shape)}, {info.num_classes} classes; "
            f"{dataset.iterations_per_epoch} iterations per epoch of batch {dataset.batch_size}")


def dry_run(root_dir: str, replicate: int = 0, strategy=None) -> str:
    """The plan of the configured run, as text; nothing is written, and no data is
    read or downloaded: the data's sizes come from the registry's table (data.plan),
    so the plan of a TPU job on ImageNet can be previewed where ImageNet is not.

    A dataset of unknown size (no sizes in the registry, not readable here) is
    planned in iterations: with a note, and without phases if a step is in
    epochs (UnknownSizeError), instead of failing.
    """
    experiment, ctx = prepare(root_dir, replicate, strategy, dry=True)
    lines = ["dry run: nothing is written", describe_start(ctx), describe_data(ctx.dataset)]
    lines += [f"note: {note}" for note in ctx.dataset.notes]
    exists = io.exists(ctx.run_dir)
    try:
        if ctx.dataset.info is None:
            experiment.validate(ctx)
        planned = phases(experiment, ctx)
    except UnknownSizeError as e:
        lines.append(f"run directory {'exists' if exists else 'does not exist yet'}; phases not "
                     f"listed: {str(e).splitlines()[0]}")
        return "\n".join(lines)
    lines.append(f"run directory {'exists' if exists else 'does not exist yet'}; phases:")
    lines += plan.describe(planned, ctx.run_dir)
    return "\n".join(lines)


def run(root_dir: str, replicate: int = 0, strategy=None, wait_for_lock: bool = False) -> dict:
    """Run the gin-configured experiment; returns the experiment's result.

    The run directory is locked for this process (runs/lock.py): a second
    process on it stops with one line, or waits with `wait_for_lock`.
    """
    experiment, ctx = prepare(root_dir, replicate, strategy)
    stop.check("before the run started")     # a signal while TensorFlow and the data loaded
    check_root(root_dir)   # every check passed: now the root may be created
    for line in describe_start(ctx).splitlines():
        logging.info("%s", line)
    ctx.state.wait_for_lock = wait_for_lock
    try:
        hold_lock(ctx, ctx.run_dir)
        rec, spec = ctx.state.hparams_record, spec_of(experiment)
        if ctx.writable:
            io.makedirs(ctx.replicate_dir)
            config_file.write_config(ctx.run_dir, gin.config_str())
            hparams_record.write(ctx.run_dir, rec)
            report_spec.write(ctx.run_dir, spec)
        planned = phases(experiment, ctx)
        ctx.state.run_log = run_log.RunLog(
            hparams_record.flat(rec["hparams"]),
            plan.steps_left(planned) if planned else None)
        # A replicate that had finished with these settings, and trains nothing now,
        # is only read: its summary, figures and records stay as its end wrote them
        # (a later replicate's end redraws the run's summary; so does tflottery.report).
        finished_before = finished_record(ctx.replicate_dir, rec["hparams"]) is not None
        preparing = []
        if ctx.writable and not finished_before:
            ctx.state.run_log.when_training = lambda: preparing.append(prepare_end_of_run(spec))
        result = experiment.run(ctx)
        rerun = finished_before and ctx.state.run_log.trained_steps == 0
        for thread in filter(None, preparing):
            thread.join()
        result = end_of_run(spec, ctx, rec, result, ctx.writable and not rerun)
        stop.check("before the run's final records")
        if ctx.writable and not rerun:
            io.atomic_write_text(layout.file(ctx.run_dir, layout.OPERATIVE_CONFIG),
                                 gin.operative_config_str())
            write_finished(ctx.replicate_dir, rec, result)
    finally:
        for lock in ctx.state.locks.values():
            lock.release()
        ctx.state.locks.clear()
    return result
