"""'lmc': instability analysis by linear mode connectivity (thesis Algorithm 3).

For each rewinding step k: take the network's state at k (dense: trained
from W0 to k; 'imp': the IMP subnetwork m_L * W_k of the matching lottery
run), train two copies to the end with different data orders and
augmentation, and evaluate the linear path between them at `num_alphas`
points on the test and the training set.  Instability = the highest error on
the path minus the mean of the two end points' errors; stable when below
SummaryHparams.stability_threshold points.

Layout, under replicate_<r>/k_<k iterations>/ (dense) or
replicate_<r>/level_<L>/k_<k iterations>/ (subnetworks of IMP level L):

    pretrain/            (dense) training from W0 to k
    copy_0/, copy_1/     the two copies' training phases
    instability.json     curves, barriers, end accuracies, distances (written last)
    instability.png      test and train error along the path

For 'imp', the lottery run directory sits beside this run in root_dir, named
exactly as `--gin_file=imp.gin` with rewind_step k would name it, so both
experiments share its levels.
"""
import dataclasses
import os

from absl import logging

from tflottery import analysis, masking
from tflottery.errors import ConfigError
from tflottery.experiments import REGISTRY
from tflottery.experiments.context import (RunContext, build_masked_model, hold_lock,
                                           load_fresh_initialisation, pretrain, training_program)
from tflottery.hparams import ExperimentHparams, InstabilityHparams, SummaryHparams
from tflottery.runs import damage, io
from tflottery.runs.naming import run_name
from tflottery.steps import to_iterations
from tflottery.training import checkpoints
from tflottery.training.loop import Trainer, validate_training
from tflottery.training.program import assign_values, variable_values

SUBNETWORKS = ("dense", "imp", "random_reinit", "random_prune_global", "random_prune_layerwise")
SCHEDULES = ("continue", "restart")


@REGISTRY.register("lmc")
class InstabilityExperiment:
    name = "lmc"

    def __init__(self):
        self.hp = InstabilityHparams()
        self.summary_hp = SummaryHparams()

    def hparams(self):
        """rewind_steps and levels are left out: adding a k or a level extends
        the run.  For subnetworks, the pruning/lottery settings that define
        the masks are included."""
        hashed = [dataclasses.replace(self.hp, rewind_steps=InstabilityHparams.rewind_steps,
                                      levels=InstabilityHparams.levels)]
        if self.hp.subnetwork != "dense":
            from tflottery.experiments.lottery import LotteryExperiment
            # Only the pruning settings: lottery_for() fixes mode and rewind step.
            hashed += LotteryExperiment().hparams()[:1]
        return hashed

    # ---- validation ----
    def validate(self, ctx: RunContext) -> None:
        hp = self.hp
        for value, allowed, what in ((hp.subnetwork, SUBNETWORKS, "subnetwork"),
                                     (hp.schedule, SCHEDULES, "schedule"),
                                     (hp.bn_mode, analysis.BN_MODES, "bn_mode")):
            if value not in allowed:
                raise ConfigError(f"unknown instability {what} {value!r}; choose one of: "
                                  f"{', '.join(allowed)}")
        if not 2 <= hp.num_alphas <= analysis.MAX_ALPHAS:
            raise ConfigError(f"InstabilityHparams.num_alphas must be in [2, "
                              f"{analysis.MAX_ALPHAS}], got {hp.num_alphas}")
        if len(hp.copy_seeds) != 2 or hp.copy_seeds[0] == hp.copy_seeds[1]:
            raise ConfigError(f"copy_seeds must be two different seeds, got {hp.copy_seeds}")
        if not hp.rewind_steps:
            raise ConfigError("InstabilityHparams.rewind_steps is empty; give at least one step")
        total = validate_training(ctx.training_hp, ctx.dataset.iterations_per_epoch).total
        for k in self.rewind_iterations(ctx):
            if k >= total:
                raise ConfigError(
                    f"rewind step {k} it is not before the end of training "
                    f"({ctx.training_hp.training_steps} = {total} it); choose smaller steps")
        if hp.subnetwork != "dense":
            if not hp.levels:
                raise ConfigError("InstabilityHparams.levels is empty; give at least one level")
            for k_text in hp.rewind_steps:
                lottery, _ = self.lottery_for(ctx, k_text)
                for level in hp.levels:
                    if not 0 <= level < lottery.plan.num_levels:
                        raise ConfigError(
                            f"IMP level {level} is not in the lottery run's levels 0.."
                            f"{lottery.plan.num_levels - 1}; raise PruningHparams.levels")

    def rewind_iterations(self, ctx: RunContext):
        ipe, dil = ctx.dataset.iterations_per_epoch, ctx.training_hp.dilation
        return [to_iterations(k, ipe, dil) for k in self.hp.rewind_steps]

    # ---- where the state at step k comes from ----
    def lottery_for(self, ctx: RunContext, k_text: str):
        """The lottery experiment (and its context) with rewinding to k."""
        from tflottery.experiments.lottery import LotteryExperiment
        lottery = LotteryExperiment()
        lottery.lottery_hp = dataclasses.replace(lottery.lottery_hp, mode="rewind",
                                                 rewind_step=k_text)
        lottery.branch_hp = dataclasses.replace(lottery.branch_hp, names=())
        hps = [ExperimentHparams(name="lottery"), ctx.dataset_hp, ctx.model_hp, ctx.training_hp]
        name = run_name("lottery", hps + lottery.hparams())
        lottery_ctx = dataclasses.replace(ctx, run_dir=os.path.join(os.path.dirname(ctx.run_dir),
                                                                    name))
        lottery.validate(lottery_ctx)
        return lottery, lottery_ctx

    def state_at_k(self, ctx: RunContext, level, k_text: str, k: int, out: str):
        """Load the state at k into the run's model; return (its mask, W0 as a vector under it)."""
        from tflottery.experiments import branches
        program = training_program(ctx)
        model = program.model
        if self.hp.subnetwork == "dense":
            pretrain_dir = os.path.join(out, "pretrain")
            pretrain(ctx, pretrain_dir, k)
            w_init = self.initial_weights(model, os.path.join(pretrain_dir, "checkpoints"))
            checkpoints.restore_weights(model, os.path.join(pretrain_dir, "checkpoints"), "end")
            return masking.get_mask(model), w_init
        lottery, lottery_ctx = self.lottery_for(ctx, k_text)
        hold_lock(ctx, lottery_ctx.run_dir)
        done = ctx.cache.setdefault(("lottery levels run", lottery_ctx.run_dir), set())
        for lvl in range(level + 1):
            if lvl not in done:     # each checked once per process, not once per k
                lottery.run_level(lottery_ctx, lvl)
                done.add(lvl)
        mask = lottery.mask_of_level(lottery_ctx, level)
        init_dir = os.path.join(lottery.pretrain_dir(lottery_ctx), "checkpoints")
        fresh_seed = None
        if self.hp.subnetwork != "imp":
            # Made before the state at k is loaded: a mask may need the model
            # for itself (the inverted one reads level L-1's trained weights).
            spec = branches.REGISTRY.get(self.hp.subnetwork)
            seed = branches.branch_seed(ctx.replicate, level, self.hp.subnetwork)
            mask = spec.make_mask(lottery, lottery_ctx, level, mask, seed)
            fresh_seed = seed if spec.fresh_init else None
        if fresh_seed is None:
            w_init = self.initial_weights(model, init_dir, mask)
            lottery.rewind_weights(lottery_ctx, model)
        else:
            # A fresh initialisation is its own W0 (and its own state at k).
            load_fresh_initialisation(ctx, model, fresh_seed)
        masking.set_mask(model, mask)
        if fresh_seed is not None:
            w_init = analysis.weight_vector(model)
        return mask, w_init

    @staticmethod
    def initial_weights(model, init_dir: str, mask=None):
        """W0 from a phase's 'init' checkpoint, as a vector, under `mask` if given.

        Loads it into `model` (the caller loads what it needs afterwards).
        """
        checkpoints.restore_weights(model, init_dir, "init")
        if mask is not None:
            masking.set_mask(model, mask)
        return analysis.weight_vector(model)

    def analysis_models(self, ctx: RunContext):
        """((copy A, copy B), their Interpolator, their PredictionLoops), built once per run.

        The copies are trained one after the other in the training program's
        model and their end weights loaded into A and B; the traced functions
        of the Interpolator (with its third, interpolated network) and of the
        prediction loops then serve every k and level of the run.
        """
        key = ("lmc", self.hp.bn_mode)
        if key not in ctx.cache:
            a, b, mix = (build_masked_model(ctx) for _ in range(3))
            interp = analysis.Interpolator(ctx.strategy, a, b, mix, ctx.dataset,
                                           bn_mode=self.hp.bn_mode)
            loops = tuple(analysis.PredictionLoop(ctx.strategy, m, ctx.dataset) for m in (a, b))
            ctx.cache[key] = ((a, b), interp, loops)
        return ctx.cache[key]

    # ---- the run ----
    def run(self, ctx: RunContext) -> dict:
        from tflottery.reporting import instability as report
        results = []
        levels = [None] if self.hp.subnetwork == "dense" else list(self.hp.levels)
        for level in levels:
            for k_text, k in zip(self.hp.rewind_steps, self.rewind_iterations(ctx)):
                results.append(self.analyse_k(ctx, level, k_text, k))
        table = report.summarize(ctx.run_dir, self.summary_hp)
        if ctx.writable:
            report.write(ctx.run_dir, table)
        print(report.to_markdown(table), flush=True)
        return {"test_accuracy": results[-1]["end_accuracy"][0], "summary": table}

    def analyse_k(self, ctx: RunContext, level, k_text: str, k: int) -> dict:
        from tflottery.reporting import instability as report
        base = ctx.replicate_dir if level is None else os.path.join(ctx.replicate_dir,
                                                                    f"level_{level}")
        out = os.path.join(base, f"k_{k}")
        result_path = os.path.join(out, "instability.json")
        done = damage.read_output(result_path, io.read_json)
        if done is not None:
            return done
        mask, w_init = self.state_at_k(ctx, level, k_text, k, out)
        program = training_program(ctx)
        model = program.model
        state_k = variable_values(model)
        w_k = analysis.weight_vector(model)
        start = k if self.hp.schedule == "continue" else 0
        ipe = ctx.dataset.iterations_per_epoch
        total = validate_training(ctx.training_hp, ipe).total
        epochs = [e * ipe for e in range(1, total // ipe + 1) if start < e * ipe <= total]
        extra = list(epochs) if self.hp.per_epoch else []
        copies, interp, loops = self.analysis_models(ctx)
        for i, seed in enumerate(self.hp.copy_seeds):
            assign_values(model, state_k)
            data_seed = seed + 1000 * ctx.replicate
            phase = os.path.join(out, f"copy_{i}")
            Trainer(ctx.strategy, model, ctx.dataset, ctx.training_hp, data_seed, phase,
                    start_step=start, extra_checkpoints=extra, writable=ctx.writable,
                    program=program).run()
            checkpoints.restore_weights(copies[i], os.path.join(phase, "checkpoints"), "end")
        alphas = analysis.alphas(self.hp.num_alphas)
        curves = interp.evaluate(alphas, splits=("test", "train"))
        result = {
            "k": k, "rewind_step": k_text, "subnetwork": self.hp.subnetwork,
            "level": level,
            "density": mask.density, "bn_mode": self.hp.bn_mode, "schedule": self.hp.schedule,
            "curves": curves,
            "barrier": {s: analysis.error_barrier(curves[s]["error"]) for s in curves},
            "end_accuracy": [curves["test"]["accuracy"][0], curves["test"]["accuracy"][-1]],
            "distances": self.distances(copies, loops, w_init, w_k),
            "dense_accuracy": self.dense_accuracy(ctx, k_text),
        }
        if self.hp.per_epoch:
            result["per_epoch"] = self.per_epoch(ctx, copies, interp, out, epochs)
        logging.info("k=%d: test instability %.2f points, train %.2f points", k,
                     100 * result["barrier"]["test"], 100 * result["barrier"]["train"])
        if ctx.writable:
            report.plot_curves(os.path.join(out, "instability.png"), result)
            if self.hp.per_epoch:
                report.plot_per_epoch(os.path.join(out, "instability_per_epoch.png"), result)
            io.atomic_write_json(result_path, result)
        return result

    def dense_accuracy(self, ctx, k_text):
        """For subnetworks: the dense network's accuracy (lottery level 0), to judge matching."""
        if self.hp.subnetwork == "dense":
            return None
        lottery, lottery_ctx = self.lottery_for(ctx, k_text)
        final = os.path.join(lottery.level_dir(lottery_ctx, 0), "train", "final.json")
        return io.read_json(final)["test_accuracy"]

    def distances(self, copies, loops, w_init, w_k) -> dict:
        """Thesis 4.3: init -> k, k -> end, copy <-> copy (all after masking);
        plus the functional distances between the copies."""
        w_a, w_b = analysis.weight_vector(copies[0]), analysis.weight_vector(copies[1])
        result = {"l2_init_to_k": analysis.l2_distance(w_init, w_k),
                  "l2_k_to_end": analysis.l2_distance(w_k, w_a),
                  "l2_copies": analysis.l2_distance(w_a, w_b),
                  "cosine_copies": analysis.cosine_distance(w_a, w_b)}
        for split in ("test", "train"):
            (pa, la), (pb, lb) = loops[0](split), loops[1](split)
            result[f"disagreement_{split}"] = analysis.disagreement(pa, pb)
            result[f"loss_distance_{split}"] = analysis.loss_distance(la, lb)
        return result

    def per_epoch(self, ctx, copies, interp, out, epochs) -> list:
        """Instability between the copies at each epoch of their training
        (the same Interpolator: its tf.functions are traced once)."""
        rows = []
        for step in epochs:
            for i, model in enumerate(copies):
                checkpoints.restore_weights(
                    model, os.path.join(out, f"copy_{i}", "checkpoints"), f"step_{step}")
            curves = interp.evaluate(analysis.alphas(self.hp.num_alphas), splits=("test",))
            rows.append({"step": step, "test_barrier": analysis.error_barrier(
                curves["test"]["error"])})
        return rows
