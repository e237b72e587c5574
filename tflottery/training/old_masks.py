"""Restoring checkpoints written while masks were float32 variables.

Masks are bool variables now (keras_compat.MASK_DTYPE); a checkpoint of a
whole model written before (a rolling 'latest' of a preempted run, a named
checkpoint of the layout before #26) holds them as float32, and
tf.train.Checkpoint refuses to restore a float32 entry into a bool
variable.  `readable_prefix` gives such a checkpoint a converted copy in
memory (`ram://`), its mask entries bool, every other entry, the object
graph included, as written; the old files are never changed, so an old run
directory resumes and reports as before.  The copy is removed once the
restore returns, so restore into objects that exist then (Checkpointer does:
a built model and optimizer); a restoration deferred to a variable created
later would find no file and fail, not restore wrong values.

Which entries are masks is found exactly, not by name: the checkpoint's
object graph is walked alongside the live objects it is restored into, and
the entries of the nodes that are the model's mask variables are converted.
Only a checkpoint with a non-bool entry named like a mask (`..._mask/...`) is
walked, so a current one costs a look at its index.
"""
import contextlib
import uuid

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tflottery.keras_compat import MASK_DTYPE, mask_values
from tflottery.masking.walk import masked_layers, masked_pairs

_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_MASK_SUFFIX = "_mask/.ATTRIBUTES/VARIABLE_VALUE"


@contextlib.contextmanager
def readable_prefix(prefix: str, root, model):
    """Yields a prefix that `root` (a tf.train.Checkpoint holding `model`) restores
    from: `prefix` itself, or a converted copy of it if it has float masks."""
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    if not any(key.endswith(_MASK_SUFFIX) and dtype != tf.as_dtype(MASK_DTYPE)
               for key, dtype in dtypes.items()):
        yield prefix
        return
    masks = set(mask_keys(reader, root, model))
    copy_dir = f"ram://tflottery_old_masks/{uuid.uuid4().hex}"
    names = sorted(dtypes)
    try:
        tf.raw_ops.SaveV2(
            prefix=f"{copy_dir}/ckpt", tensor_names=names, shape_and_slices=[""] * len(names),
            tensors=[mask_values(reader.get_tensor(key), f"mask {key} in checkpoint {prefix}")
                     if key in masks else reader.get_tensor(key) for key in names])
        yield f"{copy_dir}/ckpt"
    finally:
        if tf.io.gfile.exists(copy_dir):
            tf.io.gfile.rmtree(copy_dir)


def mask_keys(reader, root, model) -> list:
    """The checkpoint keys of `model`'s mask variables, `root` being what the checkpoint
    was written from (the same object graph)."""
    if not masked_layers(model):
        return []
    mask_ids = {id(mask) for _, mask in masked_pairs(model).values()}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_GRAPH_KEY))
    keys, seen, stack = [], set(), [(0, root)]
    while stack:
        node_id, obj = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        if id(obj) in mask_ids:
            keys.extend(attribute.checkpoint_key for attribute in node.attributes)
            continue
        children = tf.train.TrackableView.children(obj)
        stack.extend((ref.node_id, children[ref.local_name]) for ref in node.children
                     if ref.local_name in children)
    return keys
