"""Runs without experiment.json (#23): what the report knows of them.

Runs written before the record, and the lottery runs an lmc run extends
(made by lmc, not by the runner), record no ReportSpec: their experiment is
told by their config, directory name or layout, and its spec is looked up
here by that name.  The seven experiments that existed then, as they declare
themselves (tests/test_report_golden.py checks this table against their
REPORT); a later experiment always has its record.
"""
import re

from tflottery.runs.report_spec import ReportSpec

RUN_NAME = re.compile(r"(?P<experiment>.+)_(?P<hash>[0-9a-f]{10})")

SPECS = {spec.name: spec for spec in (
    ReportSpec("train", method="dense", dense=True),
    ReportSpec("lottery", method="LotteryHparams.mode",
               method_names={"rewind": "imp", "lrr": "lrr"},
               rewind_step="LotteryHparams.rewind_step", k="pretrain",
               end_of_run="tflottery.reporting.summary.end_of_run"),
    ReportSpec("lmc", method="InstabilityHparams.subnetwork",
               end_of_run="tflottery.reporting.instability.end_of_run"),
    ReportSpec("pai", method="PaiHparams.method", target_sparsity="PaiHparams.target_sparsity",
               prune_step="PaiHparams.prune_step", k="prune_step", result_file="pai.json",
               result_settings=("method", "target_sparsity")),
    ReportSpec("gradual", method="gradual", target_sparsity="GradualHparams.final_sparsity"),
    ReportSpec("dst", family="dynamic", method="DstHparams.grow",
               method_names={"gradient": "rigl", "random": "set"},
               variant=("DstHparams.distribution",), target_sparsity="DstHparams.sparsity",
               result_file="dst.json"),
    ReportSpec("dynamic_imp", family="dynamic", method="dynamic_imp",
               variant=("DynamicImpHparams.first_mask", "DynamicImpHparams.regrow_init",
                        "DynamicImpHparams.regrow", "DynamicImpHparams.min_overlap",
                        "DynamicImpHparams.next_mask", "DynamicImpHparams.drop_fraction"),
               target_sparsity="DynamicImpHparams.sparsity", result_file="dynamic_imp.json"),
)}


def experiment_of(name: str, values: dict, rels) -> str:
    """From config.gin, else the run name's prefix, else the layout (`rels`: the phase
    directories found, relative to their replicate)."""
    configured = values.get("ExperimentHparams.name")
    if isinstance(configured, str):
        return configured
    match = RUN_NAME.fullmatch(name)
    if match:
        return match.group("experiment")
    for pattern, experiment in ((r"(^|/)k_\d+", "lmc"), (r"(^|/)level_\d+", "lottery"),
                                (r"^branch_", "pai")):      # the first that matches
        if any(re.search(pattern, rel) for rel in rels):
            return experiment
    return "train" if rels else "unknown"


def spec_of(experiment: str) -> ReportSpec:
    """The spec of an experiment of the old runs (an unknown one: its name alone)."""
    return SPECS.get(experiment) or ReportSpec(experiment)
