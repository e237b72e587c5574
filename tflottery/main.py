"""Command line: `python -m tflottery.main --gin_file=quickstart.gin`.

    python -m tflottery.main --list          every experiment, model, dataset, branch,
                                             scorer, optimizer and gin config by name
    python -m tflottery.main --gin_file=quickstart.gin --dry_run
                                             the run's phases, steps and directories
                                             (and which are done); writes nothing
    python -m tflottery.main --gin_file=imp.gin --show_hparams
                                             every hyperparameter of the configured
                                             experiment: type, default, value, meaning

Flags carry only what differs between invocations of the same experiment;
everything else is configured with gin (see gin_configs/ and README.md).
"""
import errno
import gc
import logging as std_logging
import os
import re
import sys

import tflottery  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tflottery import stop, tf_import

# A run's process collects cyclic garbage rarely (see collect_garbage_rarely).
GC_THRESHOLDS = (100_000, 10, 10)


def collect_garbage_rarely() -> None:
    """Raise the garbage collector's thresholds for this process (a batch job).

    Why: importing TensorFlow and tracing create hundreds of thousands of
    long-lived Python objects, and with Python's default thresholds (700, 10,
    10) the collector ran about 1,000 times in a 7-level LeNet IMP job, six
    of them full collections over all of those objects: 1.8-2.4 s of CPU
    (0.8-1.1 s of it during the imports), measured with gc.callbacks on the
    shared 2-core machine at load 6-7.  With a first threshold of 100,000
    it runs a handful of times (0.3-0.6 s); the peak memory of that job was
    the same (790 MB), because what the collector frees here is small.
    Only the command line does this, first thing: a library import leaves the
    collector of its host alone.
    """
    gc.set_threshold(*GC_THRESHOLDS)


if __name__ == "__main__":
    collect_garbage_rarely()    # before TensorFlow's import, which does most of the allocating
    stop.install()      # already during TensorFlow's seconds of import: no signal is lost

tf_import.import_tensorflow()   # its start-up banner once, not twice

from absl import app, flags, logging  # noqa: E402

# runner imports every experiment: hparams.classes() then has all their classes.
from tflottery import catalog, gin_files, hparams, hparams_doc, runner  # noqa: E402
from tflottery.errors import Interrupted, TfLotteryError
from tflottery.training.strategy import build_strategy

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "gin config file (path, or a name in gin_configs/)")
flags.DEFINE_multi_string("gin_bindings", [], "extra gin binding, e.g. TrainingHparams.lr=0.01")
flags.DEFINE_string("root_dir", "runs", "where run directories are created (local or gs://)")
flags.DEFINE_string("tpu", None, "TPU to use: 'local' on a Cloud TPU VM, or a TPU name")
flags.DEFINE_integer("replicate", 0, "replicate number; seeds the model and data order")
flags.DEFINE_bool("wait_for_lock", False, "if another process is running the same run "
                  "directory, wait for it to finish instead of stopping")
flags.DEFINE_bool("list", False, "print every registered experiment, model, dataset, branch, "
                  "scorer, optimizer and gin config, then exit")
flags.DEFINE_bool("dry_run", False, "print the run's plan (settings, phases, steps, "
                  "directories, what is finished and will be skipped) and write nothing")
flags.DEFINE_bool("show_hparams", False, "print every hyperparameter field (type, default, "
                  "the value configured here, meaning) of the experiment the gin files "
                  "configure, or of every experiment without them, then exit")
flags.DEFINE_bool("deterministic", False, "enable TensorFlow op determinism: bit-for-bit "
                  "repeatable runs (and resumed runs) on CPU, at some cost in speed")


# Errors of a write that the user can fix (then re-running continues).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _write_failure(e: BaseException):
    """The one-line message for a failed write of the run directory, or None."""
    import tensorflow as tf
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    # TensorFlow names the traced function an op failed in: noise to the user.
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        return f"writing the run directory failed: {text}"
    if isinstance(e, (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
                      tf.errors.UnavailableError)) and (
            "space" in text or "ermission" in text or isinstance(e, tf.errors.UnavailableError)):
        return f"writing the run directory failed: {text}"
    return None


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected argument {argv[1]!r}; every option is a --flag "
              f"(see --help)", file=sys.stderr)
        sys.exit(2)
    _set_verbosity()
    try:
        if FLAGS.list:
            # Gin files given too are parsed first: what they `import` registers and is listed.
            if FLAGS.gin_file:
                gin_files.parse(FLAGS.gin_file, FLAGS.gin_bindings)
            print(catalog.format_sections(catalog.sections()))
            return
        if FLAGS.show_hparams:
            print(_hparams_help())
            return
        if not FLAGS.gin_file:
            raise TfLotteryError("no --gin_file given; try --gin_file=quickstart.gin (--list "
                                 "shows them all)")
        gin_files.parse(FLAGS.gin_file, FLAGS.gin_bindings)
        if FLAGS.deterministic:
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()
        strategy = build_strategy(FLAGS.tpu)
        if FLAGS.dry_run:
            print(runner.dry_run(FLAGS.root_dir, FLAGS.replicate, strategy))
            return
        result = runner.run(FLAGS.root_dir, FLAGS.replicate, strategy, FLAGS.wait_for_lock)
    except TfLotteryError as e:
        # gin appends "In call to configurable ..." lines; the first line says it all.
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:   # a second Ctrl-C, or one outside any safe point (stop.py)
        print("interrupted; run the same command to continue", file=sys.stderr)
        sys.exit(stop.exit_code())
    except Exception as e:  # noqa: BLE001  (only write failures are the user's to fix)
        message = _write_failure(e)
        if message is None:
            raise
        print(f"error: {message}; fix it (free space, permissions, network) and run the same "
              f"command to continue", file=sys.stderr)
        sys.exit(2)
    if isinstance(result, dict) and "test_accuracy" in result:
        of = f" of {result['accuracy_of']}" if result.get("accuracy_of") else ""
        print(f"final test accuracy{of}: {100 * result['test_accuracy']:.2f}%")


def _hparams_help() -> str:
    """--show_hparams: the configured experiment's classes with their values, or every
    class when no gin file or binding is given."""
    how = ("Set a field in a gin file or with --gin_bindings=\"Class.field = value\" "
           "(step quantities as '500it' or '2ep').")
    if not (FLAGS.gin_file or FLAGS.gin_bindings):
        return "\n".join([f"The hyperparameters of every experiment. {how}", "",
                          hparams_doc.describe(hparams.classes())])
    gin_files.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    items = runner.configured_hparams()
    return "\n".join([f"The hyperparameters of experiment {items[0].name!r} as configured "
                      f"('here:' where a value differs from the default). {how}", "",
                      hparams_doc.describe(items)])


_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull")


def _usage(full: bool) -> str:
    """--help: what the command does, its flags, and where the hyperparameters are."""
    flags_text = FLAGS.get_help() if full else FLAGS.main_module_help()
    return "\n".join([__doc__.strip(), "", "flags:", flags_text, "",
                      "Hyperparameters are set with gin (--gin_file, --gin_bindings); "
                      "--show_hparams lists them all with their defaults and meaning. "
                      "--helpfull adds the flags of absl and TensorFlow."])


def _set_verbosity() -> None:
    """--verbosity as given; unset, INFO (the progress lines).

    At INFO (0) and above only tflottery's own INFO lines are shown:
    TensorFlow's INFO chatter appears from --verbosity=1 (debug) on.
    """
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
    if FLAGS.verbosity < 1:
        logging.get_absl_handler().addFilter(
            lambda r: r.levelno >= std_logging.WARNING or "tflottery" in r.pathname)


def _exit_without_teardown(code) -> None:
    """Flush everything and leave without Python's interpreter teardown.

    TensorFlow's tf.data iterators can deadlock while the interpreter frees
    them at shutdown (a thread pool waiting on threads that will never be
    scheduled again): the run is complete, but the process stalls for
    seconds or, rarely, forever -- fatal for a sweep or a batch job.  Every
    output of a run is written (atomically) before this point, so skipping
    the teardown loses nothing.
    """
    std_logging.shutdown()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    stop.take_pending()       # from here on a signal cannot be lost to the exit below
    if code == 0 and stop.requested() is not None:
        # The request came after the last safe point: the run's results are all
        # written, but the signal is reported, never dropped.
        print(stop.interrupted("as the run finished (every result is written)"),
              file=sys.stderr)
        code = stop.exit_code()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  (a closed pipe must not change the exit code)
            pass
    os._exit(code)


def _parse_flags(argv):
    """absl's flag parsing, with a bad or unknown flag as one `error:` line and exit 2
    (absl's own parser prints two FATAL lines and exits 1); --help prints the usage and
    exits 0 (absl's exits 1)."""
    asked = [arg for arg in argv[1:] if arg.split("=")[0] in _HELP_FLAGS]
    if asked:
        print(_usage(full=any(a.startswith("--helpfull") for a in asked)))
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        text = " ".join(str(e).split())
        print(f"error: {text}; see --help for the flags", file=sys.stderr)
        sys.exit(2)


def run():
    stop.install()
    try:
        app.run(main, flags_parser=_parse_flags)
        code = 0
    except SystemExit as e:
        code = e.code
    _exit_without_teardown(code)


if __name__ == "__main__":
    run()
