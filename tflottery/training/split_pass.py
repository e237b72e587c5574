"""One pass over an evaluation split, from an input pipeline built once.

Evaluation, interpolation and the prediction loops of the LMC analysis
evaluate the same split again and again with other weights.  Building a
tf.data pipeline and its distributed iterator for every pass costs about
25 ms on a CPU, more than evaluating a small test set, and on a TPU host it
is set-up work repeated for nothing.  So a `SplitPass` builds the split's
pipeline once, repeated forever, keeps one iterator over it, and every pass
takes exactly `steps` global batches from it: one epoch of the split, since
evaluation datasets pad every pipeline to the same whole number of full
per-replica batches (data/pipeline.py `pad_to_full_batches`).  This is the
`eval_steps` shape of Google's reference TPU code.

A dataset whose pass length is not known statically (tf.data cardinality
unknown), or does not divide into whole global steps, is iterated afresh at
every pass instead, as a `for` loop over the distributed dataset.

Use inside a tf.function:

    state = split_pass.for_each_batch(body, state)   # body(images, labels, state) -> state
"""
from typing import Callable, Optional

from tflottery.data.batching import replicas_per_pipeline
from tflottery.training.iterate import for_steps


class SplitPass:
    """`dataset.eval_dataset(split)` under `strategy`, one pass per `for_each_batch`."""

    def __init__(self, strategy, dataset, split: str):
        self.split = split
        built = {}      # input pipeline id -> (its InputContext, its one-pass dataset)

        def one_pass(ctx):
            built[ctx.input_pipeline_id] = (ctx, dataset.eval_dataset(split, ctx))
            return built[ctx.input_pipeline_id][1]

        def repeated(ctx):
            # Each pipeline's dataset as built above (about 20 ms a build for MNIST).
            _, ds = built.get(ctx.input_pipeline_id) or (ctx, dataset.eval_dataset(split, ctx))
            return ds.repeat()
        self._dist = strategy.distribute_datasets_from_function(one_pass)
        self.steps = steps_per_pass(list(built.values()) or
                                    [(None, dataset.eval_dataset(split, None))])
        self._iterator = None
        if self.steps is not None:
            self._iterator = iter(strategy.distribute_datasets_from_function(repeated))

    def for_each_batch(self, body: Callable, state=()):
        """In a tf.function: `state = body(images, labels, state)` for each global batch of one pass."""
        if self._iterator is None:
            for images, labels in self._dist:
                state = body(images, labels, state)
            return state
        return for_steps(self._iterator, self.steps, body, state)

    @property
    def needs_autograph(self) -> bool:
        """Whether `for_each_batch` must be traced with autograph (a `for` loop over a
        dataset whose pass length is not known statically)."""
        return self._iterator is None


def steps_per_pass(pipelines) -> Optional[int]:
    """Global steps of one pass over an evaluation dataset, or None if not known statically.

    pipelines: (InputContext, dataset) of every input pipeline tf.distribute
    built (InputContext None: one pipeline).  Every pipeline must yield the
    same whole number of steps' worth of per-replica batches.
    """
    counts = set()
    for ctx, ds in pipelines:
        batches = int(ds.cardinality())
        per_pipeline = replicas_per_pipeline(ctx)
        if batches < 0 or batches % per_pipeline:
            return None
        counts.add(batches // per_pipeline)
    return counts.pop() if len(counts) == 1 else None
