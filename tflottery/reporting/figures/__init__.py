"""The report's figures, each drawn from the collected table (collect.py).

Every figure function takes (table, out_dir), writes PNG and PDF files
into out_dir, returns their paths, and returns [] when the table holds
nothing it can draw (draw_all logs why), so the report can call all of them
on any mix of runs.
"""
import os
from typing import List

from absl import logging

from tflottery.reporting.figures import accuracy, dynamic, lmc, pai, training

# (kind, section title, caption, function, why it may draw nothing), in the order of
# the report.
FIGURES = [
    ("lottery_accuracy", "Accuracy against sparsity: lottery runs",
     "Test accuracy at the end of training against the fraction of weights remaining "
     "(log scale, sparser to the right) for IMP/LRR and its ablation branches (dashed); "
     "lines are means over replicates, bands their min-max; the grey band is the dense "
     "network (thesis Figs. 3-3, 3-5, 3-7).", accuracy.lottery_accuracy,
     "no finished lottery levels"),
    ("lottery_comparison", "Lottery runs compared",
     "IMP/LRR runs of the same network with different settings (labelled by what differs).",
     accuracy.lottery_comparison,
     "fewer than two lottery runs of one network"),
    ("training_curves", "Test accuracy during training",
     "Test accuracy over training iterations at every pruning level of each lottery run, one "
     "panel per level; dotted: the dense network (level 0); dashed: the same level randomly "
     "reinitialised (thesis Fig. 3-1).",
     training.training_curves,
     "no lottery metrics"),
    ("pai_accuracy", "Pruning at initialisation: accuracy against sparsity",
     "Test accuracy after training against the fraction of weights remaining, one line per "
     "pruning method over the target sparsities (dotted: gradual magnitude pruning of the "
     "same network); bands are min-max over replicates (thesis Fig. 5-4).",
     accuracy.pai_accuracy,
     "no finished pai runs"),
    ("pai_ablations", "Pruning at initialisation: ablations",
     "Each method (solid) against its ablations (dashed): masks shuffled within layers, "
     "weights reinitialised, scores inverted. An ablation that matches the method means the "
     "method's per-weight choices do not matter (thesis Fig. 5-4).", accuracy.pai_ablations,
     "no pai ablation branches"),
    ("dynamic_accuracy", "Dynamic sparsity: accuracy against sparsity",
     "Test accuracy after training against the fraction of weights remaining for RigL, SET "
     "and Dynamic IMP (thesis Algorithm 5), with IMP (dotted grey) and pruning at "
     "initialisation (dotted) of the same network for reference; bands are min-max over "
     "replicates.", dynamic.dynamic_accuracy,
     "no finished dst or dynamic_imp runs"),
    ("dynamic_imp_phases", "Dynamic IMP: how the mask moves between phases",
     "Left: the share of each phase's mask that the phase before had pruned (and that was "
     "regrown); right: test accuracy at the end of each phase's dense (hybrid) and sparse "
     "training (thesis section 6.2.2).", dynamic.dynamic_imp_phases,
     "no dynamic_imp.json"),
    ("interpolation", "Linear interpolation between copies",
     "Error along the linear path between two copies trained from the state at step k with "
     "different data orders, per rewinding step k (thesis Fig. 4-2).", lmc.interpolation,
     "no instability.json with curves"),
    ("instability_vs_k", "Instability against the rewinding step",
     "Instability (highest error on the path minus the mean error of its ends) against k; "
     "below the dotted threshold training is stable (thesis Figs. 4-3, 4-15).",
     lmc.instability_vs_k,
     "no instability analyses"),
    ("stable_k_vs_sparsity", "Earliest stable and matching rewinding step",
     "The earliest k at which the IMP subnetwork is stable, and at which it is matching, "
     "against the fraction of weights remaining (median over replicates; thesis Fig. 4-18).",
     lmc.stable_k_vs_sparsity,
     "no instability analyses of pruned subnetworks"),
    ("layer_sparsity", "Weights remaining per layer",
     "Fraction of each layer's weights that each pruning method keeps (thesis Fig. 5-11).",
     pai.layer_sparsity,
     "no statistics.json"),
    ("neuron_collapse", "Neuron collapse",
     "Fraction of units (output channels / neurons) whose incoming weights are at least s% "
     "pruned, against s (thesis Fig. 5-6).", pai.neuron_collapse,
     "no neuron-collapse statistics"),
]


def draw_all(table: dict, out_dir: str) -> List[dict]:
    """Draw every figure the table supports; [{kind, title, caption, files}].

    A figure that fails is logged and listed in table['problems']: one broken
    figure must not cost the rest of the report."""
    out = []
    for kind, title, caption, function, needs in FIGURES:
        try:
            files = function(table, out_dir)
        except Exception as err:  # noqa: BLE001 -- reported, the report goes on
            logging.warning("figure %s failed: %s", kind, err)
            table.setdefault("problems", []).append(
                {"file": os.path.join(out_dir, kind), "error": f"figure failed: {err}"})
            continue
        if files:
            out.append({"kind": kind, "title": title, "caption": caption, "files": files})
        else:
            logging.info("figure %s skipped: %s", kind, needs)
    return out
