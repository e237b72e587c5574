#!/usr/bin/env python3
"""Expand a grid of tflottery runs into one command per job (standard library only;
the grid is read by tflottery/grid.py, the expander tflottery.sweep uses too).

    python launch/sweep.py --gin_file=resnet20_cifar10.gin --gin_file=imp_rewind.gin \\
        --grid "LotteryHparams.rewind_step='0it','500it','2000it'" \\
        --grid "PruningHparams.fraction=0.2,0.5" --replicates 3 --root_dir=runs

prints 3 x 2 x 3 = 18 lines `python -m tflottery.main ... --replicate=R`.  Each
--grid is one gin binding with comma-separated values (commas inside quotes
or brackets belong to the value, so tuples work); the jobs are the product of
all grids, times the replicates.  Grids over rewinding steps, sparsities and
methods are just bindings: LotteryHparams.rewind_step,
PruningHparams.target_sparsity / PaiHparams.target_sparsity, PaiHparams.method.

Formats (--format):
  lines  one shell command per line (the default), e.g. for GNU parallel:
         python launch/sweep.py ... | parallel -j 4
  slurm  a Slurm array script, one array task per job:
         python launch/sweep.py ... --format slurm --output sweep.sbatch && sbatch sweep.sbatch
  tpu    one line per TPU (--tpu-name, repeatable), each running its share of the
         jobs one after another through launch/tpu_run.sh --wait (a TPU runs one job
         at a time); run the lines side by side:  ... --format tpu | parallel -j 0

This launcher only writes commands: it never runs them, so it can be used
from a laptop for a cluster or TPUs it cannot reach.  Every tflottery stage
is idempotent, so re-running a sweep's commands resumes it.  Bad arguments
give one `error: ...` line and exit status 2.
"""
import argparse
import os
import re
import shlex
import sys
from typing import List, Sequence

LAUNCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(LAUNCH_DIR)
JOB_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_]*$")


sys.path.insert(0, REPO_DIR)   # this checkout's tflottery (its grid module is standard library only)
from tflottery import grid  # noqa: E402
from tflottery.errors import ConfigError  # noqa: E402


class SweepError(ConfigError):
    """A mistake in the sweep's arguments (printed as one line)."""


def expand(grids, replicates: Sequence[int]):
    """Every job as (replicate, [bindings]), replicates outermost (tflottery.grid)."""
    for replicate, point in grid.expand(grids, replicates):
        yield replicate, [f"{n} = {v}" for n, v in point]


def main_flags(args, replicate: int, bindings: List[str]) -> List[str]:
    """The flags of one job's `python -m tflottery.main`, without --root_dir."""
    flags = [f"--gin_file={f}" for f in args.gin_file]
    flags += [f"--gin_bindings={b}" for b in list(args.gin_bindings) + bindings]
    flags.append(f"--replicate={replicate}")
    return flags + list(args.extra)


def job_commands(args, jobs) -> List[List[str]]:
    root = [f"--root_dir={args.root_dir}"] if args.root_dir else []
    return [[args.python, "-m", "tflottery.main"] + main_flags(args, r, b) + root
            for r, b in jobs]


def quote(word: str) -> str:
    """shlex.quote, but in double quotes when that reads better (gin strings
    are in single quotes) and is as safe: nothing in the word that a POSIX
    shell expands inside double quotes."""
    if "'" in word and not any(ch in word for ch in '"$`\\!'):
        return f'"{word}"'
    return shlex.quote(word)


def join(command: Sequence[str]) -> str:
    return " ".join(quote(w) for w in command)


def format_lines(commands) -> str:
    return "".join(join(c) + "\n" for c in commands)


def format_slurm(args, commands) -> str:
    n = len(commands)
    limit = f"%{args.max_parallel}" if args.max_parallel else ""
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=tflottery-{args.job_name}",
             f"#SBATCH --array=0-{n - 1}{limit}",
             "#SBATCH --output=%x-%A_%a.out"]
    lines += [f"#SBATCH {opt}" for opt in args.sbatch]
    lines += [f"# {n} tflottery jobs written by launch/sweep.py; array task i runs JOBS[i].",
              "set -euo pipefail",
              f"cd {shlex.quote(args.chdir)}",
              "JOBS=("]
    lines += [f"  {shlex.quote(join(c))}" for c in commands]
    lines += [")",
              'echo "job ${SLURM_ARRAY_TASK_ID}: ${JOBS[$SLURM_ARRAY_TASK_ID]}"',
              'eval "${JOBS[$SLURM_ARRAY_TASK_ID]}"']
    return "\n".join(lines) + "\n"


def format_tpu(args, jobs) -> str:
    """One line per TPU: its jobs (round robin) one after another, each with --wait."""
    run_sh = os.path.relpath(os.path.join(LAUNCH_DIR, "tpu_run.sh"))
    scope = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])
    per_tpu = {name: [] for name in args.tpu_name}
    for i, (replicate, bindings) in enumerate(jobs):
        tpu = args.tpu_name[i % len(args.tpu_name)]
        cmd = ([run_sh, f"--name={tpu}"] + scope + (["--pod"] if args.pod else [])
               + [f"--root_dir={args.root_dir}", f"--job={args.job_name}-{i:03d}", "--wait", "--"]
               + main_flags(args, replicate, bindings))
        per_tpu[tpu].append(join(cmd))
    return "".join(" && ".join(cmds) + "\n" for cmds in per_tpu.values() if cmds)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="launch/sweep.py", description=__doc__.split("\n\n")[0],
        epilog="Flags after '--' are passed to every job unchanged.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", default=[], required=True,
                        help="gin file of every job (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="binding shared by every job (repeatable)")
    parser.add_argument("--grid", action="append", default=[],
                        help="'Config.field=v1,v2,...': one job per value (repeatable)")
    parser.add_argument("--replicates", type=int, default=1,
                        help="replicates 0..N-1 of every grid point (default 1)")
    parser.add_argument("--first_replicate", type=int, default=0,
                        help="number the replicates from here (to add replicates later)")
    parser.add_argument("--root_dir", help="root of the run directories (gs:// for --format tpu)")
    parser.add_argument("--format", choices=("lines", "slurm", "tpu"), default="lines")
    parser.add_argument("--output", help="write to this file instead of standard output")
    parser.add_argument("--python", default="python", help="interpreter of the jobs (lines, slurm)")
    parser.add_argument("--job_name", default="sweep",
                        help="names the Slurm job (tflottery-NAME) and the TPU jobs (NAME-000, ...)")
    parser.add_argument("--sbatch", action="append", default=[],
                        help="extra #SBATCH option, e.g. --sbatch=--gres=gpu:1 (repeatable)")
    parser.add_argument("--max_parallel", type=int, help="Slurm: at most this many tasks at once")
    parser.add_argument("--chdir", default=REPO_DIR,
                        help="Slurm: directory the jobs run in (default: this checkout)")
    parser.add_argument("--tpu-name", dest="tpu_name", action="append", default=[],
                        help="TPU for --format tpu (repeatable, or comma-separated)")
    parser.add_argument("--zone", help="zone of the TPUs (--format tpu)")
    parser.add_argument("--project", help="project of the TPUs (--format tpu)")
    parser.add_argument("--pod", action="store_true", help="the TPUs are pod slices")
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    else:
        extra = []
    args = parser.parse_args(argv)
    args.extra = extra
    return args


def check(args) -> None:
    if args.replicates < 1:
        raise SweepError(f"--replicates must be at least 1, got {args.replicates}")
    if args.first_replicate < 0:
        raise SweepError(f"--first_replicate must be >= 0, got {args.first_replicate}")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise SweepError(f"--max_parallel must be at least 1, got {args.max_parallel}")
    for flag in args.extra:
        name = flag.split("=", 1)[0]
        if name in ("--replicate", "--root_dir", "--tpu"):
            raise SweepError(f"{name} after '--' is set by the sweep; use --replicates/--root_dir")
    if not JOB_NAME.match(args.job_name):
        raise SweepError(f"--job_name {args.job_name!r} may only hold letters, digits, '-', '_'")
    if args.format == "tpu":
        args.tpu_name = [t for names in args.tpu_name for t in names.split(",") if t]
        if not args.tpu_name or not args.zone:
            raise SweepError("--format tpu needs --tpu-name (one or more) and --zone")
        if not (args.root_dir or "").startswith("gs://"):
            raise SweepError("--format tpu needs --root_dir=gs://...: the TPU VMs' disks are "
                             "lost with the VMs")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        check(args)
        grids = grid.parse_grids(args.grid)
        replicates = range(args.first_replicate, args.first_replicate + args.replicates)
        jobs = list(expand(grids, replicates))
        if args.format == "lines":
            text = format_lines(job_commands(args, jobs))
        elif args.format == "slurm":
            text = format_slurm(args, job_commands(args, jobs))
        else:
            text = format_tpu(args, jobs)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = " x ".join([str(len(v)) for _, v in grids] + [f"{args.replicates} replicate(s)"])
    print(f"{len(jobs)} jobs ({sizes})", file=sys.stderr)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
