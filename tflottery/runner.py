"""From parsed gin configuration to a finished run directory.

Order matters for "nothing half-written": every input is validated (names,
numbers, data available, steps inside training) before the run directory is
created; then config.gin is written, the experiment runs (each of its stages
skipping work already done), and operative_config.gin is written last.

Multi-worker (MultiWorkerMirroredStrategy): every worker runs the whole
experiment in a complete run tree of its own and reads only its own files;
the chief's is under root_dir, another worker's under a sibling root
(`strategy.worker_root`: root_dir.worker_1 and so on).
"""
import os

import gin
from absl import logging

from tflottery import data, experiments, models
from tflottery.errors import ConfigError
from tflottery.experiments.context import RunContext, hold_lock, prunable_weight_names
from tflottery.hparams import DatasetHparams, ExperimentHparams, ModelHparams, TrainingHparams
from tflottery.runs import io
from tflottery.runs.naming import run_name
from tflottery.runs.roots import check_root
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


def prepare(root_dir: str, replicate: int = 0, strategy=None):
    """Build hyperparameters, validate them, and return (experiment, RunContext)."""
    if replicate < 0:
        raise ConfigError(f"replicate must be >= 0, got {replicate}")
    check_root(root_dir)
    experiment, (exp_hp, dataset_hp, model_hp, training_hp) = build_hparams()
    dataset = data.build(dataset_hp,
                         infeed_dtype="bfloat16" if training_hp.mixed_precision else "float32")
    all_hp = [exp_hp, dataset_hp, model_hp, training_hp] + list(experiment.hparams())
    name = run_name(exp_hp.name, all_hp)
    strategy = strategy if strategy is not None else build_strategy()
    # Every process writes (and so makes the same collective calls): a
    # non-chief worker in its own tree beside root_dir (see worker_root).
    root = worker_root(root_dir, strategy)
    if root != root_dir:
        logging.info("not the chief: this worker's run tree is under %s", root)
    ctx = RunContext(strategy=strategy, run_dir=os.path.join(root, name),
                     replicate=replicate, dataset_hp=dataset_hp, model_hp=model_hp,
                     training_hp=training_hp, dataset=dataset, writable=True,
                     prunable_names=prunable_weight_names(model_hp, dataset.info))
    experiment.validate(ctx)
    return experiment, ctx


def run(root_dir: str, replicate: int = 0, strategy=None, wait_for_lock: bool = False) -> dict:
    """Run the gin-configured experiment; returns the experiment's result.

    The run directory is locked for this process (runs/lock.py): a second
    process on it stops with one line, or waits with `wait_for_lock`.
    """
    experiment, ctx = prepare(root_dir, replicate, strategy)
    logging.info("run directory: %s", ctx.replicate_dir)
    ctx.cache["wait_for_lock"] = wait_for_lock
    try:
        hold_lock(ctx, ctx.run_dir)
        if ctx.writable:
            io.makedirs(ctx.replicate_dir)
            config_path = os.path.join(ctx.run_dir, "config.gin")
            if not io.exists(config_path):
                io.atomic_write_text(config_path, gin.config_str())
        result = experiment.run(ctx)
        if ctx.writable:
            io.atomic_write_text(os.path.join(ctx.run_dir, "operative_config.gin"),
                                 gin.operative_config_str())
    finally:
        for lock in ctx.cache.pop("locks", {}).values():
            lock.release()
    return result
