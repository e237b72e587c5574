"""Bad inputs, generated from the hyperparameter dataclasses: is each refused cleanly?

Every field of every hyperparameter dataclass (tflottery/hparams.py and those
beside their experiments: hparams.classes(); and the
model families' option classes behind ModelHparams.options) gets a value of
the wrong type and one or two out-of-range values (chosen from the field's
annotation by `generated_cases`, so a new field is covered without editing
this file), bound with gin in the experiment that uses its class; then the hand-written
cases of issue 22 (seeds, ignored schedule parameters, layer names, levels,
model options, sizes, data files, gin syntax, flags).  A case passes when it
is refused with one line starting `error:`, nothing written: the --root_dir
is not created, not even empty.

    python benchmarks/bad_inputs.py             # every case in-process, CLI-only cases
                                                # through `python -m tflottery.main`
    python benchmarks/bad_inputs.py --cli       # every case through the CLI (slow: one
                                                # TensorFlow start each)
    python benchmarks/bad_inputs.py -v          # also list each case's outcome and error line
    python benchmarks/bad_inputs.py --cli --group hand-written -k seed   # a subset

In-process, a case runs what the CLI runs before it writes anything:
gin_files.parse, then runner.prepare (which validates everything and must
not create the root).  Through the CLI, the exit status must be 2, stderr
must have exactly one `error:` line and no traceback.  Before the cases, the
base configuration of each experiment is checked to be accepted, so a
"refused" count cannot come from a broken base.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import typing
from typing import List, NamedTuple, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small and fast: digits (1,437 training images), LeNet-300-100, a few epochs.
BASE = ["DatasetHparams.name = 'digits'", "DatasetHparams.batch_size = 60",
        "ModelHparams.name = 'lenet_300_100'", "TrainingHparams.training_steps = '10ep'",
        "TrainingHparams.eval_every = '1ep'", "PruningHparams.levels = 2",
        "BranchHparams.names = ()"]
BASE_EXPERIMENT = "train"   # the experiment that checks the classes every run has


class Case(NamedTuple):
    name: str
    bindings: tuple           # gin bindings after BASE
    files: tuple = ()         # gin files (paths), before the bindings
    flags: tuple = ()         # extra command-line flags
    cli_only: bool = False    # only the command line can show it (flags, exit status)
    expect: tuple = ()        # the error line must contain one of these (else: refused for
                              # another reason than the case's)


class Outcome(NamedTuple):
    failure: Optional[str]    # None: refused correctly
    message: str = ""         # the error line


# ---- generated cases ---------------------------------------------------------------------

def experiments_of_classes() -> dict:
    """{hparams class: the first registered experiment that holds one}, base classes -> 'train'."""
    from tflottery import experiments, hparams
    out = {cls: BASE_EXPERIMENT for cls in (hparams.DatasetHparams, hparams.ModelHparams,
                                            hparams.TrainingHparams, hparams.ExperimentHparams)}
    for name in experiments.REGISTRY.names():
        for value in vars(experiments.REGISTRY.get(name)()).values():
            if isinstance(value, hparams.Checked) and \
                    type(value).__module__.startswith("tflottery."):
                out.setdefault(type(value), name)
    return out


def _bad_values(annotation) -> List[tuple]:
    """[(kind, value)]: a wrong-type value and out-of-range values for a field's annotation."""
    if hasattr(annotation, "__supertype__"):    # a NewType (hparams.StepText): its base type
        return _bad_values(annotation.__supertype__)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:           # Optional[X] and Union[...]: as its first non-None type
        return _bad_values(next(a for a in args if a is not type(None)))
    if origin in (tuple, typing.Tuple):
        inner = next((a for a in args if a is not Ellipsis), str)
        element = [v for kind, v in _bad_values(inner) if kind == "range"]
        return [("type", 1)] + [("range", (v,)) for v in element]
    if annotation is bool:
        return [("type", "x")]
    if annotation is int:
        return [("type", "x"), ("range", -1), ("range", 10 ** 30)]
    if annotation is float:
        return [("type", "x"), ("range", -1.0), ("range", float("inf"))]
    if annotation is str:
        return [("type", 1), ("range", "bogus")]
    if annotation is dict:
        return [("type", 1), ("range", {"bogus": 1})]
    raise TypeError(f"no bad values for {annotation!r}: teach benchmarks/bad_inputs.py this type")


def gin_literal(value) -> str:
    """The gin text of a Python value (inf as 1e999, which gin reads as a float)."""
    if isinstance(value, float) and value == float("inf"):
        return "1e999"
    if isinstance(value, tuple):
        return "(" + "".join(gin_literal(v) + ", " for v in value) + ")"
    return repr(value)


def model_options_classes() -> dict:
    """{options dataclass of a model family (ModelHparams.options): the first model using it}."""
    from tflottery import models
    out = {}
    for name in sorted(models.REGISTRY.names()):
        options_cls = getattr(models.REGISTRY.get(name), "options_cls", None)
        if dataclasses.is_dataclass(options_cls):
            out.setdefault(options_cls, name)
    return out


def generated_cases() -> List[Case]:
    out = []
    for options_cls, model in model_options_classes().items():
        hints = typing.get_type_hints(options_cls)
        for field in dataclasses.fields(options_cls):
            for kind, value in _bad_values(hints[field.name]):
                binding = f"ModelHparams.options = {{{field.name!r}: {gin_literal(value)}}}"
                out.append(Case(f"{kind}: {options_cls.__name__}.{field.name} = "
                                f"{gin_literal(value)} ({model})",
                                (f"ModelHparams.name = '{model}'", binding),
                                expect=(f"ModelHparams.options[{field.name!r}]", "'bogus'")))
    for cls, experiment in experiments_of_classes().items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            for kind, value in _bad_values(hints[field.name]):
                binding = f"{cls.__name__}.{field.name} = {gin_literal(value)}"
                bindings = (f"ExperimentHparams.name = '{experiment}'", binding)
                if cls.__name__ == "ExperimentHparams":
                    bindings = (binding,)
                # The line names the field, or (unknown names) the bad name itself.
                expect = (f"{cls.__name__}.{field.name}", "'bogus'")
                out.append(Case(f"{kind}: {binding}", bindings, expect=expect))
    return out


# ---- hand-written cases (issue 22) -------------------------------------------------------

def _exp(name):
    return f"ExperimentHparams.name = '{name}'"


def hand_cases(scratch: str) -> List[Case]:
    """The issue's cases; files they need are written under `scratch`."""
    def write(name, data: bytes) -> str:
        path = os.path.join(scratch, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    random_npz = write("random.npz", os.urandom(4096))
    empty_gin = write("empty.gin", b"")
    comment_gin = write("comments.gin", b"# only a comment\n\n")
    lines = b"ExperimentHparams.name = 'train'\nDatasetHparams.name = 'digits'\n" \
            b"TrainingHparams.training_steps = '4ep'\n"
    gin_errors = {
        "unbalanced quote": b"TrainingHparams.optimizer = 'sgd\n",
        "missing =": b"TrainingHparams.lr 0.1\n",
        "non-UTF-8 bytes": b"TrainingHparams.optimizer = '\xff\xfe'\n",
        "power expression": b"TrainingHparams.steps_per_loop = 10**30\n",
        "unknown configurable": b"NoSuchHparams.lr = 0.1\n",
        "unknown field": b"TrainingHparams.no_such_field = 0.1\n",
    }
    def case(name, bindings=(), expect="", **kw) -> Case:
        return Case(name, tuple(bindings), expect=(expect,), **kw)

    lottery, lmc = _exp("lottery"), _exp("lmc")
    retrain = "BranchHparams.names = ('retrain',)"
    layerwise = "PruningHparams.scope = 'layerwise'"
    npz = "DatasetHparams.name = 'npz'"
    cases = [
        case("seed: TrainingHparams.data_seed = -1", ["TrainingHparams.data_seed = -1"],
             "TrainingHparams.data_seed"),
        case("seed: TrainingHparams.model_seed = -1", ["TrainingHparams.model_seed = -1"],
             "TrainingHparams.model_seed"),
        case("seed: TrainingHparams.model_seed = 2**40",
             ["TrainingHparams.model_seed = 1099511627776"], "2147483647"),
        case("seed: BranchHparams.data_seed = -1 (lottery)",
             [lottery, retrain, "BranchHparams.data_seed = -1"], "BranchHparams.data_seed"),
        case("seed: --replicate=99999999999999999999", [], "--replicate",
             flags=("--replicate=99999999999999999999",)),
        case("seed: --replicate=-1", [], "--replicate", flags=("--replicate=-1",)),
        case("ignored by schedule: gamma = -1.0 (constant)", ["TrainingHparams.gamma = -1.0"],
             "TrainingHparams.gamma"),
        case("ignored by schedule: final_lr = -1.0 (constant)",
             ["TrainingHparams.final_lr = -1.0"], "TrainingHparams.final_lr"),
        case("layer: unmasked_layers = ('bogus_layer',)",
             ["ModelHparams.unmasked_layers = ('bogus_layer',)"], "bogus_layer"),
        case("layer: layer_fractions = {'output': 2.0} (layerwise)",
             [lottery, layerwise, "PruningHparams.layer_fractions = {'output': 2.0}"],
             "layer_fractions"),
        case("layer: layer_fractions = {'output': -0.5} (layerwise)",
             [lottery, layerwise, "PruningHparams.layer_fractions = {'output': -0.5}"],
             "layer_fractions"),
        case("layer: layer_fractions = {'output': 'x'}",
             [lottery, "PruningHparams.layer_fractions = {'output': 'x'}"], "layer_fractions"),
        case("level: InstabilityHparams.levels = (99,) (dense)",
             [lmc, "InstabilityHparams.levels = (99,)"], "InstabilityHparams.levels"),
        case("level: BranchHparams.levels = (99,)",
             [lottery, retrain, "BranchHparams.levels = (99,)"], "branch level 99"),
        case("model option: resnet_20 bn_momentum = 'x'",
             ["ModelHparams.name = 'resnet_20'", "ModelHparams.options = {'bn_momentum': 'x'}"],
             "ModelHparams.options"),
        case("model option: unknown option", ["ModelHparams.options = {'no_such_option': 1}"],
             "no_such_option"),
        case("GradualHparams.power = -1", [_exp("gradual"), "GradualHparams.power = -1"],
             "GradualHparams.power"),
        case("GradualHparams.power = 0", [_exp("gradual"), "GradualHparams.power = 0"],
             "GradualHparams.power"),
        case("SummaryHparams.stability_threshold = -1.0 (lmc)",
             [lmc, "SummaryHparams.stability_threshold = -1.0"], "stability_threshold"),
        case("RigL at sparsity 0", [_exp("dst"), "DstHparams.sparsity = 0.0"],
             "DstHparams.sparsity"),
        case("data_dir does not exist (digits ignores it)",
             [f"DatasetHparams.data_dir = '{os.path.join(scratch, 'no_such_dir')}'"],
             "does not exist"),
        case("npz data_dir of random bytes", [npz, f"DatasetHparams.data_dir = '{random_npz}'"],
             "random.npz"),
        case("npz data_dir a directory", [npz, f"DatasetHparams.data_dir = '{scratch}'"], "npz"),
        case("size: training_steps = '99999999999999999999999it'",
             ["TrainingHparams.training_steps = '99999999999999999999999it'"], "limit"),
        case("size: training_steps = '9999999999999999ep'",
             ["TrainingHparams.training_steps = '9999999999999999ep'"], "limit"),
        case("size: eval_every = '1it' with 2**40 steps",
             ["TrainingHparams.training_steps = '1099511627776it'",
              "TrainingHparams.eval_every = '1it'"], "limit"),
        case("size: PruningHparams.levels = 1000000000",
             [lottery, "PruningHparams.levels = 1000000000"], "limit"),
        case("size: PruningHparams.levels = 200 (density below one weight)",
             [lottery, "PruningHparams.levels = 200"], "less than one weight"),
        case("size: target_sparsity = 0.99999999 (below one weight)",
             [lottery, "PruningHparams.target_sparsity = 0.99999999"], "less than one weight"),
        case("size: InstabilityHparams.num_alphas = 10**9",
             [lmc, "InstabilityHparams.num_alphas = 1000000000"], "num_alphas"),
        case("size: batch_size = 10**9", ["DatasetHparams.batch_size = 1000000000"],
             "batch_size"),
        case("empty gin file", [], "empty.gin", files=(empty_gin,)),
        case("gin file of comments only", [], "comments.gin", files=(comment_gin,)),
    ]
    for what, text in gin_errors.items():
        path = write(f"{what.replace(' ', '_')}.gin", lines + text)
        quoted = text.decode("utf-8", "backslashreplace").strip()
        cases.append(case(f"gin parse: {what}", [], f"{path}:4: {quoted}", files=(path,)))
    cases += [
        case("gin binding parse: unbalanced quote", ["TrainingHparams.optimizer = 'sgd"],
             "--gin_bindings: TrainingHparams.optimizer = 'sgd"),
        case("flag: --bogus_flag=1", [], "bogus_flag", flags=("--bogus_flag=1",), cli_only=True),
        case("flag: --replicate=x", [], "--replicate", flags=("--replicate=x",), cli_only=True),
        case("flag: stray argument", [], "unexpected argument", flags=("quickstart.gin",),
             cli_only=True),
    ]
    return cases


# ---- running a case ------------------------------------------------------------------------

def _replicate(case: Case) -> int:
    for flag in case.flags:
        if flag.startswith("--replicate="):
            return int(flag.split("=", 1)[1])
    return 0


def _judge(case: Case, line: str, problems: list, root: str) -> Outcome:
    if os.path.exists(root):
        problems.append("root created")
    if case.expect and not any(text in line for text in case.expect):
        problems.append(f"the error does not say {' or '.join(map(repr, case.expect))}")
    return Outcome(", ".join(problems) or None, line)


def run_in_process(case: Case, root: str) -> Outcome:
    """Whether the case is refused with one line and nothing written, and that line."""
    import gin
    from tflottery import gin_files, runner
    from tflottery.errors import TfLotteryError
    gin.clear_config()
    try:
        gin_files.parse(list(case.files), BASE + list(case.bindings))
        runner.prepare(root, _replicate(case))
    except TfLotteryError as e:
        first = str(e).splitlines()[0] if str(e) else ""
        return _judge(case, "error: " + first, [] if first.strip() else ["empty message"], root)
    except Exception as e:  # noqa: BLE001  (a traceback is what the benchmark counts)
        text = " ".join(str(e).split())[:160]
        return Outcome(f"traceback: {type(e).__name__}: {text}")
    finally:
        gin.clear_config()
    return Outcome("accepted" + (" and root created" if os.path.exists(root) else ""))


def _base_file(scratch: str) -> str:
    path = os.path.join(scratch, "base.gin")
    with open(path, "w") as f:
        f.write("\n".join(BASE) + "\n")
    return path


def cli_command(case: Case, root: str, scratch: str) -> list:
    files = list(case.files) or [_base_file(scratch)]
    args = [f"--gin_file={f}" for f in files]
    args += [f"--gin_bindings={b}" for b in (BASE if case.files else []) + list(case.bindings)]
    return [sys.executable, "-m", "tflottery.main", f"--root_dir={root}", *args, *case.flags]


def run_cli(case: Case, root: str, scratch: str, timeout: float = 120) -> Outcome:
    """As run_in_process, through `python -m tflottery.main` (exit 2, one error: line)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        result = subprocess.run(cli_command(case, root, scratch), cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Outcome(f"still running after {timeout:.0f} s"
                       + (" (root created)" if os.path.exists(root) else ""))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    problems = []
    if result.returncode != 2:
        problems.append(f"exit {result.returncode}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error: lines")
    if "Traceback" in result.stderr:
        problems.append("traceback")
    line = (errors or result.stderr.strip().splitlines()[-1:] or [""])[0]
    return _judge(case, line, problems, root)


def check_bases() -> List[str]:
    """The experiments whose base configuration is refused (should be none)."""
    refused = []
    with tempfile.TemporaryDirectory() as scratch:
        for experiment in sorted(set(experiments_of_classes().values())):
            outcome = run_in_process(Case("base", (_exp(experiment),)), os.path.join(scratch, "r"))
            if not (outcome.failure or "").startswith("accepted"):
                refused.append(f"{experiment}: {outcome.message}")
    return refused


def run_cases(cases: Sequence[Case], cli: bool, verbose: bool = False) -> dict:
    """{case name: Outcome}."""
    outcomes = {}
    with tempfile.TemporaryDirectory() as scratch:
        for i, case in enumerate(cases):
            root = os.path.join(scratch, f"root_{i}")
            if cli or case.cli_only:
                outcome = run_cli(case, root, scratch)
            else:
                outcome = run_in_process(case, root)
            outcomes[case.name] = outcome
            if verbose:
                print(f"{'ok  ' if outcome.failure is None else 'FAIL'} {case.name}  -> "
                      f"{outcome.failure or outcome.message}", flush=True)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", action="store_true", help="run every case through the CLI")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--group", choices=("generated", "hand-written"), default=None,
                        help="only this group of cases")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    import tflottery  # noqa: F401  (Keras 2 before TensorFlow)
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    bad_bases = check_bases()
    if bad_bases:
        sys.exit("the base configuration is refused, so no count means anything:\n  "
                 + "\n  ".join(bad_bases))
    with tempfile.TemporaryDirectory() as scratch:
        groups = {"generated": generated_cases(), "hand-written": hand_cases(scratch)}
        totals = {}
        for group, cases in groups.items():
            if args.group not in (None, group):
                continue
            cases = [c for c in cases if args.k in c.name]
            outcomes = run_cases(cases, args.cli, args.verbose)
            failing = {n: o.failure for n, o in outcomes.items() if o.failure is not None}
            totals[group] = (len(outcomes), len(outcomes) - len(failing), failing)
    for group, (n, ok, failing) in totals.items():
        print(f"{group}: {n} cases, {ok} refused correctly, {len(failing)} failing")
        for name, outcome in failing.items():
            print(f"  FAIL {name}  -> {outcome}")
    sys.exit(1 if any(f for _, _, f in totals.values()) else 0)


if __name__ == "__main__":
    main()
