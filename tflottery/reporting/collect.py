"""Every result under a root directory as one tidy table.

A sweep leaves many run directories (`<experiment>_<hash>/`), each with
replicates, levels, branches, rewinding steps.  Tables and figures should
not each walk that tree again, nor each decide what a half-finished or
damaged run means; this module does it once:

* `rows`: one row per training phase (a level, a branch, a pruned network, a
  pretraining segment, a copy), with what the phase is (run, experiment,
  replicate, level, branch, method, density, steps) and its result
  (test accuracy at the final step), plus the run's config bindings as
  'Class.field' columns.  A phase that has started but has no final.json is
  a row with status 'partial' (step = last step logged); figures and tables
  use only status 'done'.
* `instability`: one row per instability analysis (lmc's instability.json).
* `statistics`: the pruning statistics (per-layer sparsity, neuron collapse)
  of every mask that has a statistics.json.
* `runs`: per run its config (text and bindings), replicates and status.
* `problems`: every file that could not be read (bad JSON, truncated npz),
  by path; the file is skipped and the rest is collected.

Paths go through tf.io.gfile, so a gs:// root works.  Paths and file names
are runs/layout.py's; what an experiment's rows mean (method, sparsity, k,
result file) is its ReportSpec, recorded in the run's experiment.json
(runs/report_spec.py), or for older runs reporting/legacy.py's.
"""
import csv
import io as _io
import json
import os
import statistics as _stats
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tflottery import hparams_record
from tflottery.reporting import ginconfig, legacy
from tflottery.runs import damage, io, layout, report_spec

PHASE_COLUMNS = [
    "run", "experiment", "replicate", "phase", "kind", "level", "branch", "branch_settings",
    "method", "density", "sparsity", "target_sparsity", "rewind_step", "prune_step", "k",
    "step", "test_accuracy", "test_loss", "steps_per_second", "status", "path"]
INSTABILITY_COLUMNS = [
    "run", "experiment", "replicate", "level", "k", "rewind_step", "subnetwork", "density",
    "test_instability", "train_instability", "end_accuracy", "dense_accuracy", "bn_mode",
    "schedule", "align", "aligned_test_instability", "aligned_train_instability",
    "soup_accuracy", "aligned_soup_accuracy", "path"]

# Directories never holding results: not descended into (checkpoints are big).
_SKIP = {layout.CHECKPOINTS, layout.TENSORBOARD, layout.MASK}
# How deep under the root to look for run directories (root/sweep/group/run).
_MAX_DEPTH = 3


class _Reader:
    """Reads result files; each unreadable one becomes a `problems` entry."""

    def __init__(self):
        self.problems: List[dict] = []

    def _problem(self, path, err):
        message = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        self.problems.append({"file": path, "error": message})
        logging.warning("skipping unreadable %s (%s)", path, message)

    def call(self, read, path: str):
        """read() (of the file at `path`); None, the file listed as a problem, if it fails."""
        try:
            return read()
        except (ValueError, UnicodeDecodeError, tf.errors.OpError) as err:
            self._problem(path, err)
            return None

    def json(self, path: str):
        return self.call(lambda: io.read_json(path), path) if io.exists(path) else None

    def text(self, path: str) -> Optional[str]:
        return self.call(lambda: io.read_text(path) if io.exists(path) else None, path)

    def jsonl(self, path: str) -> list:
        records, bad = [], 0
        for line in (self.text(path) or "").splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    bad += 1
        if bad:
            self._problem(path, ValueError(f"{bad} line(s) are not JSON; kept the others"))
        return records

    def npz_density(self, path: str) -> Optional[float]:
        """Fraction of True entries over all arrays of a mask.npz."""
        if not io.exists(path):
            return None
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
            with np.load(_io.BytesIO(data)) as arrays:
                kept = sum(int(np.count_nonzero(arrays[k])) for k in arrays.files)
                total = sum(int(arrays[k].size) for k in arrays.files)
            return kept / total if total else None
        except Exception as err:  # zipfile.BadZipFile, EOFError, ValueError, ...
            self._problem(path, err)
            return None


def metrics(phase_dir: str) -> List[dict]:
    """A phase's metrics.jsonl records for tables and figures (bad lines and an unreadable
    file are skipped, with a warning: the collector lists them as problems)."""
    return _Reader().jsonl(layout.file(phase_dir, layout.METRICS))


def read_or_warn(path: str, *field):
    """json[field...] of `path` for a run's end-of-run summary; None if the file is
    missing, or (with a warning naming it and the command that remakes it) damaged."""
    if not io.exists(path):
        return None
    try:
        value = io.read_json(path)
        for key in field:
            value = value[key]
        return value
    except (TypeError, *damage.DAMAGE_ERRORS) as err:
        warn_left_out(path, f"{type(err).__name__}: {err}".splitlines()[0][:200])
        return None


def warn_left_out(path: str, error: str) -> None:
    """The warning of a damaged file that a run's end-of-run summary leaves out."""
    logging.warning("%s is damaged (%s); left out of the summary: run its replicate again "
                    "(the same command with its --replicate) to remake it", path, error)


def numbered(directory: str, prefix: str) -> List[tuple]:
    """(number, path) of the `prefix`<number> entries of `directory` (layout.numbered)."""
    return [(n, layout.join(directory, name))
            for n, name in layout.numbered(listdir(directory), prefix)]


def listdir(path: str) -> List[str]:
    """The sorted entry names of a directory ([] if it cannot be listed)."""
    try:
        return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))
    except tf.errors.OpError:
        return []


def is_run_dir(path: str) -> bool:
    names = listdir(path)
    return layout.CONFIG in names or hparams_record.FILENAME in names or bool(
        layout.numbered(names, layout.REPLICATE))


def find_runs(root: str) -> List[str]:
    """Run directories: `root` itself, or directories up to 3 levels below it."""
    if is_run_dir(root):
        return [root]
    runs, frontier = [], [root]
    for _ in range(_MAX_DEPTH):
        deeper = []
        for directory in frontier:
            for name in listdir(directory):
                child = layout.join(directory, name)
                if not tf.io.gfile.isdir(child):
                    continue
                (runs if is_run_dir(child) else deeper).append(child)
        frontier = deeper
    return sorted(runs)


# ---- one replicate: its phases and result files ----

def _scan_replicate(rep_dir: str):
    """Phase directories and instability.json files of one replicate (relative to it),
    not entering checkpoints/, tensorboard/ or mask/."""
    phases, instability = [], []
    for top, dirs, files in tf.io.gfile.walk(rep_dir):
        names = {d.rstrip("/") for d in dirs}
        dirs[:] = sorted(d for d in dirs if d.rstrip("/") not in _SKIP)
        files = {f.rstrip("/") for f in files}
        rel = os.path.relpath(top, rep_dir).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        if layout.FINAL in files or layout.METRICS in files or layout.CHECKPOINTS in names:
            phases.append(rel)
        if layout.INSTABILITY in files:
            instability.append(rel)
    return phases, instability


def _variant_text(values: dict, key: str) -> str:
    """'field=value' of a 'Class.field' set to other than its default, else ''."""
    if key in values and values[key] != ginconfig.lookup({}, key):
        return f"{key.split('.', 1)[1]}={ginconfig.as_text(values[key])}"
    return ""


class _Collector:
    def __init__(self):
        self.reader = _Reader()
        self.notes: List[str] = []
        self.runs, self.rows, self.instability, self.statistics, self.dynamic = [], [], [], [], []

    # ---- densities and per-run settings ----
    def _mask_density(self, mask_dir: str) -> Optional[float]:
        report = self.reader.json(layout.file(mask_dir, layout.MASK_REPORT))
        if isinstance(report, dict) and "total" in report:
            # The density comes from the report, but a damaged mask.npz
            # beside it is still worth a warning (a re-run would redo it).
            self.reader.npz_density(layout.file(mask_dir, layout.MASK_FILE))
            return float(report["total"]["density"])
        stats = self.reader.json(layout.file(mask_dir, layout.STATISTICS))
        if isinstance(stats, dict) and stats.get("layers"):
            size = sum(v["size"] for v in stats["layers"].values())
            return sum(v["kept"] for v in stats["layers"].values()) / size if size else None
        return self.reader.npz_density(layout.file(mask_dir, layout.MASK_FILE))

    def _retrain_settings(self, branch: str, branch_dir: str, run: dict) -> Optional[dict]:
        """The data seed / dilation of a 'retrain_<tag>' branch.

        The directory name holds only a hash of them.  A `branch.json` in the
        branch directory is used if present; otherwise the BranchHparams of
        config.gin and operative_config.gin are hashed the way layout.py
        names the directory, and used when they give the same tag (a run
        extended later with other settings may match neither: None)."""
        if not branch.startswith("retrain_"):
            return None
        saved = self.reader.json(layout.file(branch_dir, layout.BRANCH_RECORD))
        if isinstance(saved, dict):
            return {k: saved[k] for k in ("data_seed", "dilation") if saved.get(k) is not None}
        for values in run["_candidates"]:
            settings = {k: values.get(f"BranchHparams.{k}") for k in ("data_seed", "dilation")}
            if layout.branch_dir_name("retrain", **settings) == layout.BRANCH + branch:
                return {k: v for k, v in settings.items() if v is not None}
        return None

    def _run_values(self, run_dir: str, run: dict) -> None:
        """The run's settings: its hparams.json, else (runs from before it) its
        config.gin or operative_config.gin parsed back (reporting/ginconfig.py)."""
        texts = {fname: self.reader.text(layout.file(run_dir, fname))
                 for fname in (layout.CONFIG, layout.OPERATIVE_CONFIG)}
        texts = {fname: text for fname, text in texts.items() if text is not None}
        run["_candidates"] = []
        for fname, text in texts.items():
            values, error = ginconfig.parse(text)
            if error:
                self.reader.problems.append({"file": layout.file(run_dir, fname), "error": error})
            run["_candidates"].append(values)
        source = next(iter(texts), None)        # config.gin, else operative_config.gin
        record = self.reader.call(lambda: hparams_record.read(run_dir),
                                  layout.file(run_dir, hparams_record.FILENAME))
        run["config_file"] = source if record is None else hparams_record.FILENAME
        run["config_text"] = texts.get(source, "")
        run["config_text_file"] = source        # which file the page shows
        if record is None:
            run["_values"] = run["_candidates"][0] if source else {}
            if source != layout.CONFIG:
                run["notes"].append("no config.gin" + (
                    "; settings read from operative_config.gin" if source else
                    "; settings unknown, experiment inferred from the directory name/layout"))
        else:
            # Non-default fields only, as config.gin lists what was set; ginconfig.lookup
            # gives the defaults.  All fields are a candidate for the retrain-branch tags.
            run["_values"] = dict(hparams_record.flat(record["non_default"]),
                                  **{"ExperimentHparams.name": record["experiment"]})
            run["_candidates"].insert(0, hparams_record.flat(record["hparams"]))
            if not run["config_text"]:
                run["config_text"] = json.dumps(record["hparams"], indent=1)
                run["config_text_file"] = hparams_record.FILENAME
        run["config"] = {k: ginconfig.as_text(v) for k, v in sorted(run["_values"].items())}

    def _spec(self, run_dir: str, run: dict, scans) -> report_spec.ReportSpec:
        """The run's recorded ReportSpec, else (older runs) legacy.py's for its experiment."""
        spec = self.reader.call(lambda: report_spec.read(run_dir),
                                layout.file(run_dir, layout.EXPERIMENT_RECORD))
        if spec is not None:
            return spec
        rels = [rel for phases, inst in scans for rel in phases + inst]
        return legacy.spec_of(legacy.experiment_of(run["run"], run["_values"], rels))

    # ---- one run ----
    def collect_run(self, run_dir: str) -> None:
        name = os.path.basename(run_dir.rstrip("/"))
        run = {"run": name, "run_dir": run_dir, "notes": []}
        self._run_values(run_dir, run)
        replicates = numbered(run_dir, layout.REPLICATE)
        scans = {r: _scan_replicate(d) for r, d in replicates}
        values = run["_values"]
        run["_spec"] = self._spec(run_dir, run, scans.values())
        run["experiment"] = run["_spec"].name
        run["replicates"] = [r for r, _ in replicates]
        model = ginconfig.lookup(values, "ModelHparams.name")
        data = ginconfig.lookup(values, "DatasetHparams.name")
        run["network"] = f"{model} on {data}" if run["config_file"] else "unknown network"
        before = len(self.rows)
        for r, d in replicates:
            self._collect_replicate(run, r, d, *scans[r])
        mine = self.rows[before:]
        if not mine and not any(i["run"] == name for i in self.instability):
            run["status"] = "empty"
            run["notes"].append("no training phase has started")
        elif any(row["status"] == "partial" for row in mine) or not io.exists(
                layout.file(run_dir, layout.OPERATIVE_CONFIG)):
            run["status"] = "partial"
        else:
            run["status"] = "done"
        self.notes += [f"{name}: {note}" for note in run["notes"]]
        self.runs.append(run)

    def _settings(self, run: dict, rep_dir: str) -> dict:
        """Per-replicate settings, as the run's ReportSpec says: method, target sparsity,
        rewinding / pruning step, k, and the replicate's result file."""
        values, spec = run["_values"], run["_spec"]
        result = self.reader.json(layout.file(rep_dir, spec.result_file)) \
            if spec.result_file else None
        result = result if isinstance(result, dict) else {}
        out = {"result": result, "method": spec.method_of(values, ginconfig.lookup, _variant_text)}
        for field in ("target_sparsity", "rewind_step", "prune_step"):
            key = getattr(spec, field)
            out[field] = ginconfig.lookup(values, key) if key else None
        for field in spec.result_settings:
            # config.gin, else what the result file says, else the hparams default.
            key = spec.method if field == "method" else getattr(spec, field)
            if key not in values and field in result:
                out[field] = result[field]
        pretrain = self.reader.json(layout.file(layout.pretrain_dir(rep_dir), layout.FINAL)) \
            if spec.k else None
        out["k"] = pretrain.get("step") if isinstance(pretrain, dict) else None
        if spec.k == "prune_step":
            if "prune_step" in result:
                out["k"] = result["prune_step"]
            elif not isinstance(pretrain, dict) and not io.exists(layout.pretrain_dir(rep_dir)):
                out["k"] = 0     # no pretraining phase: pruned at step 0
        return out

    def _collect_replicate(self, run, replicate, rep_dir, phases, instability_dirs):
        settings = self._settings(run, rep_dir)
        result = settings["result"]
        if run["_spec"].family == "dynamic" and "test_accuracy" in result:
            self.dynamic.append(dict(result, run=run["run"], experiment=run["experiment"],
                                     replicate=replicate, method=settings["method"],
                                     network=run["network"]))
        found = {rel: self._instability_row(run, replicate, rep_dir, rel)
                 for rel in instability_dirs}
        k_dirs = {rel: row for rel, row in found.items() if row is not None}
        self.instability += k_dirs.values()
        rows = (self._phase_row(run, replicate, rep_dir, rel, settings, k_dirs) for rel in phases)
        self.rows += [row for row in rows if row is not None]

    def _phase_row(self, run, replicate, rep_dir, rel, settings, k_dirs):
        phase_dir = layout.join(rep_dir, rel) if rel else rep_dir
        info = layout.describe(rel)
        final_path = layout.file(phase_dir, layout.FINAL)
        final = None
        if io.exists(final_path):
            final = self.reader.json(final_path)
            if not isinstance(final, dict) or "test_accuracy" not in final:
                if final is not None:
                    self.reader.problems.append(
                        {"file": final_path, "error": "no test_accuracy in it"})
                return None      # corrupt: reported, skipped
        metrics = self.reader.jsonl(layout.file(phase_dir, layout.METRICS))
        rates = [m["steps_per_second"] for m in metrics if "steps_per_second" in m][1:]
        row = {"run": run["run"], "experiment": run["experiment"], "replicate": replicate,
               "phase": rel or ".", "kind": info["kind"], "level": info["level"],
               "branch": info["branch"], "branch_settings": None,
               "method": settings["method"], "target_sparsity": settings["target_sparsity"],
               "rewind_step": settings["rewind_step"], "prune_step": settings["prune_step"],
               "k": info["k"] if info["k"] is not None else settings["k"],
               "status": "done" if final is not None else "partial",
               "step": (final or {}).get("step", metrics[-1]["step"] if metrics else None),
               "test_accuracy": (final or {}).get("test_accuracy"),
               "test_loss": (final or {}).get("test_loss"),
               "steps_per_second": _stats.median(rates) if rates else None,
               "path": phase_dir}
        if info["branch"] is not None:
            branch_dir = phase_dir[:phase_dir.rindex(layout.BRANCH + info["branch"])] + (
                layout.BRANCH + info["branch"])
            row["branch_settings"] = self._retrain_settings(info["branch"], branch_dir, run)
        row["density"] = self._phase_density(run, rep_dir, rel, info, settings, k_dirs)
        self._dynamic_phase(row, rep_dir, rel)
        if info["kind"] == layout.PRETRAIN:
            # An instability analysis's pretraining (under k_<k>) keeps its method.
            row["method"] = "dense" if info["k"] is None else row["method"]
            row["target_sparsity"] = None
        record = k_dirs.get(layout.analysis_of(rel))
        if record:
            row["rewind_step"] = record["rewind_step"]
            row["method"] = record["subnetwork"] or row["method"]
        row["sparsity"] = None if row["density"] is None else 1.0 - row["density"]
        row.update(run["config"])
        if info["kind"] == "train" and row["status"] == "done":
            self._statistics(row)
        return row

    def _dynamic_phase(self, row, rep_dir, rel) -> None:
        """A phase_<i>/dense|sparse phase (Dynamic IMP): the last phase's sparse training is
        the run's result (kind 'train', at its mask's density); every other is kind 'phase'."""
        found = layout.dynamic_phase(rel)
        if not found:
            return
        index, part = found
        last = layout.numbered(listdir(rep_dir), layout.PHASE)[-1][0]
        row["kind"] = "train" if part == layout.SPARSE and index == last else "phase"
        row["density"] = (self._mask_density(layout.mask_dir(layout.dynamic_phase_dir(
            rep_dir, index))) if part == layout.SPARSE else None)

    def _phase_density(self, run, rep_dir, rel, info, settings, k_dirs):
        if info["kind"] == layout.PRETRAIN:
            return 1.0          # pretraining is dense in every experiment
        if info["kind"] == "copy":
            record = k_dirs.get(layout.analysis_of(rel))
            return record["density"] if record else None
        phase_dir = layout.join(rep_dir, rel) if rel else rep_dir
        candidates = [layout.mask_of_phase(phase_dir)]
        if info["branch"] is not None and info["level"] is not None:
            candidates.append(layout.mask_dir(layout.level_dir(rep_dir, info["level"])))
        from_result = bool(run["_spec"].result_settings)
        if info["branch"] is not None and from_result:
            branch = (settings["result"].get("branches") or {}).get(info["branch"], {})
            if "density" in branch:
                return float(branch["density"])
        for mask_dir in candidates:
            if tf.io.gfile.isdir(mask_dir):
                density = self._mask_density(mask_dir)
                if density is not None:
                    return density
        if from_result and info["branch"] is None and settings["result"]:
            return settings["result"].get("density")
        return 1.0 if run["_spec"].dense else None

    def _statistics(self, row):
        path = layout.file(layout.mask_of_phase(row["path"]), layout.STATISTICS)
        stats = self.reader.json(path)
        if stats is None:
            return
        if not isinstance(stats, dict) or not isinstance(stats.get("layers"), dict):
            self.reader.problems.append({"file": path, "error": "no 'layers' in it"})
            return
        record = {key: row[key] for key in ("run", "experiment", "replicate", "level",
                                            "branch", "method", "density",
                                            "target_sparsity")}
        record.update({"path": path, "layers": stats["layers"],
                       "thresholds": stats.get("thresholds"),
                       "neuron_collapse": stats.get("neuron_collapse") or {},
                       "network_neuron_collapse": stats.get("network_neuron_collapse"),
                       "fully_pruned_layers": stats.get("fully_pruned_layers") or []})
        self.statistics.append(record)

    def _instability_row(self, run, replicate, rep_dir, rel):
        path = layout.file(layout.join(rep_dir, rel), layout.INSTABILITY)
        record = self.reader.json(path)
        if record is None:
            return None
        try:
            row = {"run": run["run"], "experiment": run["experiment"], "replicate": replicate,
                   "level": record.get("level"), "k": int(record["k"]),
                   "rewind_step": record["rewind_step"],
                   "subnetwork": record.get("subnetwork", "dense"),
                   "density": record["density"],
                   "test_instability": float(record["barrier"]["test"]),
                   "train_instability": float(record["barrier"]["train"]),
                   "end_accuracy": float(np.mean(record["end_accuracy"])),
                   "dense_accuracy": record.get("dense_accuracy"),
                   "bn_mode": record.get("bn_mode"), "schedule": record.get("schedule"),
                   "path": path, "curves": record.get("curves"),
                   "per_epoch": record.get("per_epoch"),
                   "_soup_n": (record.get("soup") or {}).get("n")}
        except (KeyError, TypeError, ValueError) as err:
            self.reader._problem(path, err)
            return None
        for key, value in (record.get("distances") or {}).items():
            row[f"distance_{key}"] = value
        row.update(_linear_columns(record, ""))
        row.update(_alignment_columns(record))
        row.update(run["config"])
        return row


def _alignment_columns(record) -> dict:
    """lmc's barriers after permutation alignment and soup accuracies (issue #15), if any."""
    aligned, soup = record.get("aligned") or {}, record.get("soup") or {}
    row = {"align": aligned.get("method"), "aligned_curves": aligned.get("curves"),
           "soup_accuracy": (soup.get("accuracy") or {}).get("test"),
           "aligned_soup_accuracy": (soup.get("aligned_accuracy") or {}).get("test")}
    for split in ("test", "train"):
        row[f"aligned_{split}_instability"] = (aligned.get("barrier") or {}).get(split)
    for key, value in (aligned.get("distances") or {}).items():
        row[f"aligned_distance_{key}"] = value
    row.update(_linear_columns(aligned, "aligned_"))
    return row


def _linear_columns(measured: dict, prefix: str) -> dict:
    """The barriers above the straight line between the end points (Entezari et al.,
    Ainsworth et al.), where the record has them (lmc runs made since they exist)."""
    linear = measured.get("linear_barrier") or {}
    return {f"{prefix}{split}_linear_instability": float(linear[split])
            for split in ("test", "train") if split in linear}


def collect(root: str) -> dict:
    """Read every run under `root` (a directory of runs, or one run directory)."""
    collector = _Collector()
    for run_dir in find_runs(root):
        collector.collect_run(run_dir)
    kinds = {"pretrain": 0, "train": 1, "copy": 2}

    def order(row):
        return (row["run"], row["replicate"], -1 if row.get("level") is None else row["level"],
                row.get("branch") or "", kinds.get(row.get("kind"), 3), row.get("k") or 0,
                row.get("phase", ""))
    return {"root": root, "runs": collector.runs, "rows": sorted(collector.rows, key=order),
            "instability": sorted(collector.instability, key=order),
            "statistics": collector.statistics,
            "dynamic": sorted(collector.dynamic, key=lambda r: (r["run"], r["replicate"])),
            "problems": collector.reader.problems, "notes": collector.notes}


# ---- output ----

def _public(rows: List[dict]) -> List[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def public(table: dict) -> dict:
    """The table without the private fields (parsed configs, the summaries' extras) for JSON."""
    return dict(table, runs=_public(table["runs"]), instability=_public(table["instability"]))


def _csv(rows: List[dict], columns: List[str]) -> str:
    extra = sorted({k for row in _public(rows) for k in row if k not in columns} - {
        "curves", "per_epoch"})
    out = _io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns + extra, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else json.dumps(v, sort_keys=True)
                             if isinstance(v, (dict, list)) else v) for k, v in row.items()})
    return out.getvalue()


def write(table: dict, out_dir: str) -> List[str]:
    """results.json (everything), results.csv (phases), instability.csv; returns paths."""
    paths = [os.path.join(out_dir, "results.json"), os.path.join(out_dir, "results.csv")]
    io.atomic_write_json(paths[0], public(table))
    io.atomic_write_text(paths[1], _csv(table["rows"], PHASE_COLUMNS))
    if table["instability"]:
        paths.append(os.path.join(out_dir, "instability.csv"))
        io.atomic_write_text(paths[-1], _csv(table["instability"], INSTABILITY_COLUMNS))
    return paths


# ---- helpers for tables and figures ----

def done(rows: List[dict], **where) -> List[dict]:
    """Finished rows matching every `column=value` given."""
    return [r for r in rows if r["status"] == "done" and r.get("test_accuracy") is not None
            and all(r.get(k) == v for k, v in where.items())]


def run_values(table: dict, run: str) -> Dict[str, object]:
    return next((r.get("_values", {}) for r in table["runs"] if r["run"] == run), {})
