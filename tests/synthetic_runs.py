"""A synthetic root directory of runs, written file by file, for the report tests.

Every experiment layout the report reads (train, lottery with branches and
two replicates, LRR, lmc dense and IMP, pai with ablations and
statistics.json, gradual), plus what goes wrong in practice: a partial run,
a run without config.gin, a corrupt final.json, a corrupt statistics.json
and a truncated mask.npz.  `build(root)` returns what was written, so
tests can compare the collected table with it row by row.
"""
import json
import os

import numpy as np

# The runs stand for ones the experiments wrote; a report reads the defaults their
# config.gin leaves out from the experiments' hyperparameter classes (as the report
# command line does, which imports them too).
import tflottery.experiments  # noqa: E402,F401

NETWORK = ["DatasetHparams.name = 'cifar10'", "ModelHparams.name = 'conv_2'",
           "TrainingHparams.optimizer = 'adam'", "TrainingHparams.lr = 0.0002",
           "TrainingHparams.training_steps = '2000it'"]
LAYERS = {"conv_1/kernel": (3, 3, 3, 64), "conv_2/kernel": (3, 3, 64, 64),
          "fc_1/kernel": (16384, 256), "fc_2/kernel": (256, 256), "output/kernel": (256, 10)}
LOTTERY_BRANCHES = ("random_reinit", "random_prune_global", "random_prune_layerwise", "inverted")
PAI_METHODS = ("snip", "synflow", "random")
PAI_SPARSITIES = (0.5, 0.8, 0.9, 0.96, 0.99)
ABLATIONS = ("shuffle", "reinit", "invert")


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=1))


def _config(run_dir, experiment, *bindings):
    lines = [f"ExperimentHparams.name = '{experiment}'"] + NETWORK + list(bindings)
    _write(os.path.join(run_dir, "config.gin"), "\n".join(lines) + "\n")


def _operative(run_dir):
    _write(os.path.join(run_dir, "operative_config.gin"),
           open(os.path.join(run_dir, "config.gin")).read())


def _phase(phase_dir, accuracy, start=0, end=2000, final=True):
    """metrics.jsonl rising to `accuracy` from `start` to `end`, and final.json."""
    lines = []
    steps = list(range(start, end + 1, 250)) if end > start else [start]
    for i, step in enumerate(steps):
        frac = (i + 1) / len(steps)
        if step > start:
            lines.append({"step": step, "train_loss": 1.0 - 0.5 * frac,
                          "train_accuracy": min(1.0, accuracy + 0.05),
                          "steps_per_second": 50.0 + i})
        lines.append({"step": step, "test_loss": 1.2 - 0.6 * frac,
                      "test_accuracy": round(0.1 + (accuracy - 0.1) * (1 - (1 - frac) ** 3), 6)})
    _write(os.path.join(phase_dir, "metrics.jsonl"),
           "".join(json.dumps(r) + "\n" for r in lines))
    os.makedirs(os.path.join(phase_dir, "tensorboard"), exist_ok=True)
    if final:
        _write(os.path.join(phase_dir, "final.json"),
               {"step": end, "test_loss": 0.6, "test_accuracy": accuracy})


def _sparsity(mask_dir, density):
    _write(os.path.join(mask_dir, "sparsity.json"),
           {"layers": {}, "total": {"density": density, "sparsity": 1 - density}})


def _statistics(mask_dir, method, density, rng):
    """Per-layer kept counts around `density` (SNIP empties fc_1 first) and
    neuron-collapse curves over thresholds 0..100."""
    tilt = {"snip": {"fc_1/kernel": 0.3, "conv_1/kernel": 2.5},
            "synflow": {"fc_1/kernel": 0.8, "output/kernel": 1.5}}.get(method, {})
    layers, collapse = {}, {}
    thresholds = list(range(0, 101))
    for name, shape in LAYERS.items():
        size = int(np.prod(shape))
        d = min(1.0, density * tilt.get(name, 1.0))
        kept = int(round(size * d))
        layers[name] = {"size": size, "kept": kept, "density": kept / size}
        spread = {"snip": 12.0, "synflow": 6.0}.get(method, 2.0)
        centre = 100 * (1 - d)
        collapse[name] = [float(1 / (1 + np.exp((s - centre) / spread))) for s in thresholds]
    units = {n: s[-1] for n, s in LAYERS.items()}
    total_units = sum(units.values())
    network = [sum(collapse[n][i] * units[n] for n in LAYERS) / total_units
               for i in range(len(thresholds))]
    network = [min(1.0, max(0.0, v + rng.normal(0, 0.005))) for v in network]
    _write(os.path.join(mask_dir, "statistics.json"),
           {"layers": layers, "thresholds": thresholds, "neuron_collapse": collapse,
            "network_neuron_collapse": network,
            "fully_pruned_layers": [n for n, v in layers.items() if v["kept"] == 0]})
    return layers


def _corrupt_npz(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 truncated")


def _npz(path, density, rng):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    masks = {name.replace("/", "__"): rng.random((40, 50)) < density
             for name in ("fc_1/kernel", "fc_2/kernel")}
    np.savez(path, **masks)
    return float(np.mean([m.mean() for m in masks.values()]))


def imp_accuracy(level, replicate, branch=None):
    """An IMP-like curve: a little better when moderately sparse, then worse."""
    d = 0.8 ** level
    base = 0.80 + 0.02 * (1 - d) * (d > 0.1) - 0.3 * max(0.0, 0.15 - d)
    base += 0.002 * replicate
    if branch == "random_reinit":
        base -= 0.06 * (1 - d)
    elif branch in ("random_prune_global", "random_prune_layerwise"):
        base -= 0.08 * (1 - d)
    elif branch == "inverted":
        base -= 0.2 * (1 - d)
    elif branch is not None:
        base += 0.001
    return round(base, 6)


def build(root):
    """Write the synthetic root; returns {'rows': {(run, replicate, phase): expected},
    'corrupt': [paths], 'partial': [(run, replicate, phase)], ...}."""
    from tflottery.runs import layout
    rng = np.random.default_rng(0)
    expected, corrupt = {}, []
    retrain = layout.branch_dir_name("retrain", data_seed=7)[len("branch_"):]

    # ---- lottery, rewinding to 500it, 2 replicates, 7 levels, 5 branches ----
    run = "lottery_aaaaaaaaaa"
    run_dir = os.path.join(root, run)
    _config(run_dir, "lottery", "LotteryHparams.rewind_step = '500it'",
            "PruningHparams.levels = 6", "BranchHparams.data_seed = 7",
            "BranchHparams.names = ('random_reinit', 'random_prune_global', "
            "'random_prune_layerwise', 'inverted', 'retrain')")
    _operative(run_dir)
    for r in range(2):
        rep = os.path.join(run_dir, f"replicate_{r}")
        _phase(os.path.join(rep, "pretrain"), 0.5, 0, 500)
        expected[(run, r, "pretrain")] = {"test_accuracy": 0.5, "density": 1.0, "k": 500,
                                          "step": 500, "kind": "pretrain"}
        for level in range(7):
            d = 0.8 ** level
            ldir = os.path.join(rep, f"level_{level}")
            density = d
            if (r, level) == (1, 3):      # no sparsity.json: density from mask.npz
                density = _npz(os.path.join(ldir, "mask", "mask.npz"), d, rng)
            else:
                _sparsity(os.path.join(ldir, "mask"), d)
            acc = imp_accuracy(level, r)
            _phase(os.path.join(ldir, "train"), acc, 500)
            expected[(run, r, f"level_{level}/train")] = {
                "test_accuracy": acc, "density": density, "level": level, "branch": None,
                "method": "imp", "k": 500, "rewind_step": "500it", "step": 2000}
            if level == 0:
                continue
            for name in LOTTERY_BRANCHES + (retrain,):
                bdir = os.path.join(ldir, f"branch_{name}")
                phase = f"level_{level}/branch_{name}/train"
                if (r, level, name) == (1, 6, "inverted"):
                    _sparsity(os.path.join(bdir, "mask"), d)
                    os.makedirs(os.path.join(bdir, "train"))
                    _write(os.path.join(bdir, "train", "final.json"), '{"step": 2000, "test_acc')
                    corrupt.append(os.path.join(bdir, "train", "final.json"))
                    continue
                _sparsity(os.path.join(bdir, "mask"), d)
                bacc = imp_accuracy(level, r, name)
                _phase(os.path.join(bdir, "train"), bacc, 500)
                expected[(run, r, phase)] = {
                    "test_accuracy": bacc, "density": d, "level": level, "branch": name,
                    "method": "imp", "branch_settings": {"data_seed": 7}
                    if name == retrain else None}

    # ---- LRR of the same network, 1 replicate, 4 levels ----
    run = "lottery_bbbbbbbbbb"
    run_dir = os.path.join(root, run)
    _config(run_dir, "lottery", "LotteryHparams.mode = 'lrr'", "PruningHparams.levels = 3")
    _operative(run_dir)
    rep = os.path.join(run_dir, "replicate_0")
    _phase(os.path.join(rep, "pretrain"), 0.1, 0, 0)
    expected[(run, 0, "pretrain")] = {"test_accuracy": 0.1, "density": 1.0, "k": 0}
    for level in range(4):
        d = 0.8 ** level
        _sparsity(os.path.join(rep, f"level_{level}", "mask"), d)
        acc = round(imp_accuracy(level, 0) + 0.004 * level, 6)
        _phase(os.path.join(rep, f"level_{level}", "train"), acc)
        expected[(run, 0, f"level_{level}/train")] = {"test_accuracy": acc, "density": d,
                                                      "method": "lrr", "level": level}

    # ---- a partial lottery run: level 1 has started, no final.json ----
    run = "lottery_0123456789"
    run_dir = os.path.join(root, run)
    _config(run_dir, "lottery", "TrainingHparams.data_seed = 3")
    rep = os.path.join(run_dir, "replicate_0")
    _phase(os.path.join(rep, "pretrain"), 0.1, 0, 0)
    _sparsity(os.path.join(rep, "level_0", "mask"), 1.0)
    _phase(os.path.join(rep, "level_0", "train"), 0.79)
    _sparsity(os.path.join(rep, "level_1", "mask"), 0.8)
    _phase(os.path.join(rep, "level_1", "train"), 0.5, 0, 750, final=False)
    expected[(run, 0, "pretrain")] = {"test_accuracy": 0.1, "density": 1.0}
    expected[(run, 0, "level_0/train")] = {"test_accuracy": 0.79, "density": 1.0}
    expected[(run, 0, "level_1/train")] = {"status": "partial", "step": 750, "density": 0.8,
                                           "test_accuracy": None}

    # ---- lmc of IMP subnetworks (levels 2 and 4), k in 0..2000, 2 replicates ----
    run = "lmc_cccccccccc"
    run_dir = os.path.join(root, run)
    _config(run_dir, "lmc", "InstabilityHparams.subnetwork = 'imp'",
            "InstabilityHparams.levels = (2, 4)",
            "InstabilityHparams.rewind_steps = ('0it', '100it', '500it', '1000it')")
    _operative(run_dir)
    instability = {}
    alphas = [i / 8 for i in range(9)]
    for r in range(2):
        for level in (2, 4):
            d = 0.8 ** level
            for k, text in ((0, "0it"), (100, "100it"), (500, "500it"), (1000, "1000it")):
                barrier = max(0.0, (0.3 if level == 4 else 0.2) * np.exp(-k / 200.0)
                              - 0.004 + 0.003 * r)
                end_acc = 0.80 - 0.03 * np.exp(-k / 300.0) + 0.001 * r
                kdir = os.path.join(run_dir, f"replicate_{r}", f"level_{level}", f"k_{k}")
                curves = {}
                for split, base in (("test", 1 - end_acc), ("train", 0.9 - end_acc)):
                    err = [base + barrier * 4 * a * (1 - a) for a in alphas]
                    curves[split] = {"alpha": alphas, "error": err,
                                     "accuracy": [1 - e for e in err],
                                     "loss": [0.5 + e for e in err]}
                record = {"k": k, "rewind_step": text, "subnetwork": "imp", "level": level,
                          "density": d, "bn_mode": "recompute", "schedule": "continue",
                          "curves": curves,
                          "barrier": {"test": barrier, "train": barrier * 0.8},
                          "end_accuracy": [end_acc, end_acc],
                          "distances": {"l2_copies": 10.0 * barrier},
                          "dense_accuracy": 0.80}
                _write(os.path.join(kdir, "instability.json"), record)
                instability[(run, r, level, k)] = record
                for c in range(2):
                    _phase(os.path.join(kdir, f"copy_{c}"), end_acc, k)
                    expected[(run, r, f"level_{level}/k_{k}/copy_{c}")] = {
                        "test_accuracy": end_acc, "density": d, "k": k, "kind": "copy",
                        "method": "imp", "rewind_step": text, "level": level}

    # ---- dense lmc, one replicate ----
    run = "lmc_dddddddddd"
    run_dir = os.path.join(root, run)
    _config(run_dir, "lmc", "InstabilityHparams.rewind_steps = ('0it', '250it')")
    _operative(run_dir)
    for k, text in ((0, "0it"), (250, "250it")):
        kdir = os.path.join(run_dir, "replicate_0", f"k_{k}")
        barrier = 0.1 if k == 0 else 0.005
        curves = {"test": {"alpha": alphas, "error": [0.2 + barrier * 4 * a * (1 - a)
                                                      for a in alphas]}}
        record = {"k": k, "rewind_step": text, "subnetwork": "dense", "level": None,
                  "density": 1.0, "curves": curves, "barrier": {"test": barrier,
                                                                "train": barrier},
                  "end_accuracy": [0.8, 0.8], "dense_accuracy": None}
        _write(os.path.join(kdir, "instability.json"), record)
        instability[(run, 0, None, k)] = record
        _phase(os.path.join(kdir, "pretrain"), 0.3, 0, k)
        expected[(run, 0, f"k_{k}/pretrain")] = {"test_accuracy": 0.3, "density": 1.0,
                                                 "kind": "pretrain", "k": k}
        for c in range(2):
            _phase(os.path.join(kdir, f"copy_{c}"), 0.8, k)
            expected[(run, 0, f"k_{k}/copy_{c}")] = {"test_accuracy": 0.8, "density": 1.0}

    # ---- pai: 3 methods x 5 sparsities, 2 replicates, ablations for snip and synflow ----
    statistics = {}
    for m_i, method in enumerate(PAI_METHODS):
        for s_i, target in enumerate(PAI_SPARSITIES):
            run = f"pai_{m_i:05d}{s_i:05d}"
            run_dir = os.path.join(root, run)
            _config(run_dir, "pai", f"PaiHparams.method = '{method}'",
                    f"PaiHparams.target_sparsity = {target}", "PaiHparams.prune_step = '0it'")
            _operative(run_dir)
            for r in range(2):
                rep = os.path.join(run_dir, f"replicate_{r}")
                d = round(1 - target, 6)
                quality = {"snip": 0.0, "synflow": 0.005, "random": -0.02}[method]
                acc = round(0.80 + quality * target - 0.25 * max(0, target - 0.9) ** 1.0
                            - 0.001 * r, 6)
                _sparsity(os.path.join(rep, "mask"), d)
                stats_path = os.path.join(rep, "mask", "statistics.json")
                if (method, target, r) == ("random", 0.9, 1):
                    _write(stats_path, '{"layers": {"conv_1/kernel": {"si')
                    corrupt.append(stats_path)
                else:
                    statistics[(run, r)] = _statistics(os.path.join(rep, "mask"), method, d,
                                                       rng)
                _phase(os.path.join(rep, "train"), acc)
                expected[(run, r, "train")] = {"test_accuracy": acc, "density": d,
                                               "method": method, "target_sparsity": target,
                                               "prune_step": "0it", "k": 0, "branch": None}
                pai = {"method": method, "density": d, "prune_step": 0, "test_accuracy": acc,
                       "branches": {}}
                if method != "random":
                    for a_i, name in enumerate(ABLATIONS):
                        bacc = round(acc - (0.002 if name != "invert" else 0.05) * (a_i + 1)
                                     * target, 6)
                        bdir = os.path.join(rep, f"branch_{name}")
                        _sparsity(os.path.join(bdir, "mask"), d)
                        _phase(os.path.join(bdir, "train"), bacc)
                        pai["branches"][name] = {"density": d, "test_accuracy": bacc}
                        expected[(run, r, f"branch_{name}/train")] = {
                            "test_accuracy": bacc, "density": d, "method": method,
                            "branch": name, "target_sparsity": target}
                _write(os.path.join(rep, "pai.json"), pai)

    # ---- gradual magnitude pruning, same network ----
    run = "gradual_eeeeeeeeee"
    run_dir = os.path.join(root, run)
    _config(run_dir, "gradual", "GradualHparams.final_sparsity = 0.9")
    _operative(run_dir)
    rep = os.path.join(run_dir, "replicate_0")
    _phase(os.path.join(rep, "train"), 0.805)
    _write(os.path.join(rep, "train", "sparsity.jsonl"),
           "".join(json.dumps({"step": s, "sparsity": 0.9 * min(1, s / 1500)}) + "\n"
                   for s in range(0, 2001, 250)))
    _sparsity(os.path.join(rep, "mask"), 0.1)
    statistics[(run, 0)] = _statistics(os.path.join(rep, "mask"), "gradual", 0.1, rng)
    expected[(run, 0, "train")] = {"test_accuracy": 0.805, "density": 0.1, "method": "gradual",
                                   "target_sparsity": 0.9}

    # ---- dynamic sparsity, same network: RigL, and Dynamic IMP in two phases ----
    run = "dst_1111111111"
    run_dir = os.path.join(root, run)
    _config(run_dir, "dst", "DstHparams.sparsity = 0.9")
    _operative(run_dir)
    rep = os.path.join(run_dir, "replicate_0")
    _phase(os.path.join(rep, "train"), 0.79)
    _sparsity(os.path.join(rep, "mask"), 0.1)
    _write(os.path.join(rep, "dst.json"), {
        "grow": "gradient", "distribution": "erk", "density": 0.1, "test_accuracy": 0.79,
        "updates": 14, "stop_step": 1500,
        "final_vs_start": {"new_not_in_previous": 0.4, "previous_not_in_new": 0.4}})
    expected[(run, 0, "train")] = {"test_accuracy": 0.79, "density": 0.1, "method": "rigl",
                                   "target_sparsity": 0.9, "kind": "train"}
    run = "dynamic_imp_2222222222"
    run_dir = os.path.join(root, run)
    _config(run_dir, "dynamic_imp", "DynamicImpHparams.change_points = ('1000it',)",
            "DynamicImpHparams.regrow = 'gradient'")
    _operative(run_dir)
    rep = os.path.join(run_dir, "replicate_0")
    method = "dynamic_imp (regrow=gradient)"
    phases = []
    for i, (start, end) in enumerate(((0, 1000), (1000, 2000)), start=1):
        sparse_acc = 0.78 + 0.01 * i
        _phase(os.path.join(rep, f"phase_{i}", "dense"), 0.8, start, end)
        _phase(os.path.join(rep, f"phase_{i}", "sparse"), sparse_acc, start, end)
        _sparsity(os.path.join(rep, f"phase_{i}", "mask"), 0.1)
        expected[(run, 0, f"phase_{i}/dense")] = {"test_accuracy": 0.8, "density": None,
                                                  "method": method, "kind": "phase"}
        expected[(run, 0, f"phase_{i}/sparse")] = {
            "test_accuracy": sparse_acc, "density": 0.1, "method": method,
            "kind": "train" if i == 2 else "phase"}
        phases.append({"phase": i, "start": start, "end": end, "dense_test_accuracy": 0.8,
                       "sparse_test_accuracy": sparse_acc, "density": 0.1})
    phases[0]["regrown"] = 1000
    phases[1].update(overlap_with_previous={"new_not_in_previous": 0.3,
                                            "previous_not_in_new": 0.3}, regrown_kept=0.3)
    _write(os.path.join(rep, "dynamic_imp.json"), {
        "sparsity": 0.9, "change_points": [1000], "first_mask": "imp", "regrow_init": "fresh",
        "regrow": "gradient", "density": 0.1, "test_accuracy": 0.8, "phases": phases})

    # ---- dense training, same network, 2 replicates ----
    run = "train_ffffffffff"
    run_dir = os.path.join(root, run)
    _config(run_dir, "train")
    _operative(run_dir)
    for r in range(2):
        _phase(os.path.join(run_dir, f"replicate_{r}", "train"), 0.798 + 0.003 * r)
        expected[(run, r, "train")] = {"test_accuracy": 0.798 + 0.003 * r, "density": 1.0,
                                       "method": "dense"}

    # ---- a run without config.gin (experiment from its name) ----
    run = "train_9999999999"
    _phase(os.path.join(root, run, "replicate_0", "train"), 0.7)
    expected[(run, 0, "train")] = {"test_accuracy": 0.7, "density": 1.0}

    # ---- a truncated mask.npz (its sparsity.json missing too) in a started pai run ----
    run = "pai_badbadbad0"
    run_dir = os.path.join(root, run)
    _config(run_dir, "pai", "PaiHparams.method = 'magnitude'", "PaiHparams.target_sparsity = 0.5",
            "PaiHparams.prune_step = '0it'", "ModelHparams.name = 'lenet_300_100'")
    rep = os.path.join(run_dir, "replicate_0")
    _corrupt_npz(os.path.join(rep, "mask", "mask.npz"))
    corrupt.append(os.path.join(rep, "mask", "mask.npz"))
    _phase(os.path.join(rep, "train"), 0.6)
    expected[(run, 0, "train")] = {"test_accuracy": 0.6, "density": None}

    return {"rows": expected, "corrupt": corrupt, "instability": instability,
            "statistics": statistics, "retrain": retrain}


def speed_run(root, name="lottery_speed"):
    """A lottery run for the training-speed section: levels 0 and 2 with holdout
    evaluations, retrain branches at dilations 0.5 and 2 (branch.json), two replicates;
    no config.gin."""
    run = os.path.join(root, name)
    for rep in range(2):
        for level, density in ((0, 1.0), (2, 0.64)):
            base = os.path.join(run, f"replicate_{rep}", f"level_{level}")
            _write(os.path.join(base, "mask", "sparsity.json"), {"total": {"density": density}})
            for phase_name, dilation, acc in (
                    ("train", None, 0.95 - 0.01 * level + 0.002 * rep),
                    ("branch_retrain_a/train", 0.5, 0.9 + 0.01 * rep),
                    ("branch_retrain_b/train", 2.0, 0.96 - 0.01 * level)):
                phase = os.path.join(base, phase_name)
                records = []
                for i, loss in enumerate((1.0, 0.4 + 0.1 * level, 0.6)):
                    records += [{"step": 100 * i, "test_loss": 1.0,
                                 "test_accuracy": round(acc - 0.1 * (2 - i), 4)},
                                {"step": 100 * i, "holdout_loss": loss,
                                 "holdout_accuracy": 0.5}]
                _write(os.path.join(phase, "metrics.jsonl"),
                       "".join(json.dumps(r) + "\n" for r in records))
                _write(os.path.join(phase, "final.json"), {"step": 200, "test_accuracy": acc})
                if dilation is not None:
                    _write(os.path.join(os.path.dirname(phase), "branch.json"),
                           {"name": "retrain", "level": level, "dilation": dilation,
                            "data_seed": None})
    return run


def _pai_sweep(root, first, scope, rng):
    """magnitude, random and SynFlow at 80% and 96% sparsity, one replicate, with
    PaiHparams.scope = `scope` (None: not set); magnitude and random score the same
    (their lines lie on each other) and only SynFlow has an ablation (one panel)."""
    for m_i, method in enumerate(("magnitude", "random", "synflow")):
        for s_i, target in enumerate((0.8, 0.96)):
            run_dir = os.path.join(root, f"pai_{first + m_i:05d}{s_i:05d}")
            _config(run_dir, "pai", f"PaiHparams.method = '{method}'",
                    f"PaiHparams.target_sparsity = {target}", "PaiHparams.prune_step = '0it'",
                    *([f"PaiHparams.scope = '{scope}'"] if scope else []))
            _operative(run_dir)
            rep = os.path.join(run_dir, "replicate_0")
            d = round(1 - target, 6)
            acc = round(0.79 - 0.1 * target ** 4 + (0.01 if method == "synflow" else 0.0), 6)
            _sparsity(os.path.join(rep, "mask"), d)
            _statistics(os.path.join(rep, "mask"), method, d, rng)
            _phase(os.path.join(rep, "train"), acc)
            pai = {"method": method, "density": d, "prune_step": 0, "test_accuracy": acc,
                   "branches": {}}
            if method == "synflow":
                bdir = os.path.join(rep, "branch_shuffle")
                _sparsity(os.path.join(bdir, "mask"), d)
                _phase(os.path.join(bdir, "train"), acc - 0.004)
                pai["branches"]["shuffle"] = {"density": d, "test_accuracy": acc - 0.004}
            _write(os.path.join(rep, "pai.json"), pai)


def build_showcase(root, full: bool = True):
    """What a real sweep adds that the report must still show legibly: a training-speed
    run; a pai sweep of the same network as another that differs from it only in
    PaiHparams.scope (layerwise), where magnitude and random pruning score the same
    and only SynFlow has an ablation (a one-panel figure); and an lmc run of
    'independent_imp' subnetworks with InstabilityHparams.align (raw and aligned
    instability, soups: the widest instability table).  `full`: on top of build(root)
    (for benchmarks/report_screenshots.py); else the other sweep is a small one like it
    (the browser test's quicker page)."""
    if full:
        build(root)
    speed_run(root)
    rng = np.random.default_rng(1)
    if not full:
        _pai_sweep(root, 4, None, rng)
    _pai_sweep(root, 7, "layerwise", rng)
    run_dir = os.path.join(root, "lmc_3f9a8b7c6d")
    _config(run_dir, "lmc", "InstabilityHparams.rewind_steps = ('0it', '100it', '500it')",
            "InstabilityHparams.align = 'weights'", "InstabilityHparams.levels = (3,)",
            "InstabilityHparams.subnetwork = 'independent_imp'")
    _operative(run_dir)
    alphas = [i / 8 for i in range(9)]
    for r in range(2):
        for k in (0, 100, 500):
            kdir = os.path.join(run_dir, f"replicate_{r}", "level_3", f"k_{k}")
            record = {"k": k, "rewind_step": f"{k}it", "subnetwork": "independent_imp",
                      "level": 3, "density": 0.512, "end_accuracy": [0.8, 0.8],
                      "dense_accuracy": 0.8}
            for key, barrier in (("raw", 0.2 * np.exp(-k / 150.0) + 0.002 * r),
                                 ("aligned", 0.06 * np.exp(-k / 150.0) + 0.001 * r)):
                curves = {split: {"alpha": alphas,
                                  "error": [base + barrier * 4 * a * (1 - a) for a in alphas]}
                          for split, base in (("test", 0.2), ("train", 0.1))}
                part = {"curves": curves, "barrier": {"test": barrier, "train": barrier * 0.9}}
                if key == "raw":
                    record.update(part)
                else:
                    record["aligned"] = dict(part, method="weights", moved_fraction=0.8)
            record["soup"] = {"accuracy": {"test": 0.3}, "aligned_accuracy": {"test": 0.75}}
            _write(os.path.join(kdir, "instability.json"), record)
            _phase(os.path.join(kdir, "pretrain"), 0.3, 0, k)
            for c in range(2):
                _phase(os.path.join(kdir, f"copy_{c}"), 0.8, k)
