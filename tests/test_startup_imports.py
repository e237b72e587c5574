"""What a training run's process imports before its first step (#26 item 4).

`python -m tflottery.main` imports TensorFlow and the runner (which imports
every experiment, so gin knows all their classes).  Modules that only some
runs need are imported where they are used: SciPy's optimizer (weight
matching of an aligning lmc run), matplotlib (the end-of-run figure), JAX
(which TensorFlow's tf.lite would import for a converter tflottery never
calls).  Each costs a fraction of a second in every run when imported
eagerly.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAZY = ("scipy.optimize", "matplotlib", "jax")


def _imported_by_main():
    """The LAZY modules present after `import tflottery.main` in a fresh process, and
    whether `import jax` still works afterwards."""
    script = ("import sys, importlib.util\n"
              "import tflottery.main\n"
              f"print(sorted(m for m in {LAZY!r} if m in sys.modules))\n"
              "if importlib.util.find_spec('jax') is not None:\n"
              "    import jax\n"
              "    print('jax imports afterwards', jax.numpy.zeros(2).shape)\n")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_main_imports_none_of_the_modules_only_some_runs_need():
    lines = _imported_by_main()
    assert lines[0] == "[]", f"imported at start-up: {lines[0]}"
    if importlib.util.find_spec("jax") is not None:
        assert lines[1] == "jax imports afterwards (2,)"


def _collections_of_a_command(*flags):
    """(full collections, collections of any generation, thresholds at exit) of
    `python -m tflottery.main FLAGS` run whole in a fresh process."""
    script = ("import gc, os, runpy, sys\n"
              "counts = [0, 0]\n"
              "def count(phase, info):\n"
              "    if phase == 'stop':\n"
              "        counts[0] += info['generation'] == 2\n"
              "        counts[1] += 1\n"
              "gc.callbacks.append(count)\n"
              "exit = os._exit\n"
              "def report(code):\n"
              "    print('GC', counts[0], counts[1], tuple(gc.get_threshold()), flush=True)\n"
              "    exit(code)\n"
              "os._exit = report\n"
              f"sys.argv = ['tflottery.main'] + {list(flags)!r}\n"
              "runpy.run_module('tflottery.main', run_name='__main__', alter_sys=True)\n")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("GC ")]
    full, total, thresholds = line.split(" ", 3)[1:]
    return int(full), int(total), thresholds


def test_the_command_line_collects_garbage_rarely():
    """Importing TensorFlow made Python's default collector run about 800 times,
    six of them full collections over every object (about a second of CPU in
    every run); the command line raises the thresholds before that import."""
    from tflottery import main
    full, total, thresholds = _collections_of_a_command("--list")
    assert thresholds == str(main.GC_THRESHOLDS)
    assert full == 0, f"{full} full collections while the command started"
    assert total < 50, f"{total} collections while the command started"


def test_jax_imported_before_tensorflow_is_left_alone(monkeypatch):
    """Only a JAX not yet imported is held back; one already imported stays."""
    from tflottery import tf_import
    marker = object()
    monkeypatch.setitem(sys.modules, "jax", marker)
    with tf_import._jax_skipped():
        assert sys.modules["jax"] is marker
    assert sys.modules["jax"] is marker


def test_jax_is_importable_again_after_the_tensorflow_import(monkeypatch):
    from tflottery import tf_import
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    with tf_import._jax_skipped():
        with pytest.raises(ImportError):
            importlib.import_module("jax")
    assert "jax" not in sys.modules
