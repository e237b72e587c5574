"""What a named checkpoint stores since #26: each tensor once, and a record of its files.

Before, every named checkpoint ('init', 'end', 'step_<N>') was
`tf.train.Checkpoint(model=..., optimizer=...)`: the weights, every mask as
float32 and the optimizer's slots (Adam: two), about 8x the float32 weights
per phase.  Now a named checkpoint holds:

  ckpt.index, ckpt.data-*   the model's variables except its masks (weights,
                            biases, BatchNorm statistics), as
                            tf.train.Checkpoint(model=<those variables>);
                            left out when its weights equal another stored
                            checkpoint's under this checkpoint's masks (below)
  mask_bits.npz             the masks, one bit a weight (np.packbits)
  info.json                 step, data seed; "format": 2; "files": size of
                            each file above, and sha256 of all but the tensor
                            data, taken when it was written; "weights_from":
                            the other checkpoint, if any

Optimizer slots are in no named checkpoint: nothing reads them (the rolling
'latest', which a preempted phase resumes from, keeps them; it is removed
when the phase ends).

References.  A phase's 'init' is usually the rewinding point (or W0, or the
previous level's end for LRR) under the phase's mask.  `restore` remembers,
per model, the checkpoint it last loaded; the next named checkpoint saved
from that model compares its weights bit for bit with that checkpoint's
under its own masks (pruned entries +0.0, as masking.zero_pruned_weights
leaves them) and, if they are equal, stores only the reference.  Restoring a
reference loads the other checkpoint's weights, its own masks, and zeroes
the pruned entries: the model then holds exactly what was saved.  Only a
phase's 'init' is stored so.  A reference is written to a checkpoint that
holds tensors; should that one be damaged and written again as a reference
itself, restoring follows the chain.

Integrity on re-run (`check`): sizes of the recorded files against the
filesystem's, and the sha256 of the small ones (the index, which holds every
tensor's CRC32C, and the mask bits): one read of the small files, none of the
tensor data.  A checkpoint without a record (the layout before #26) is read
back whole, as before.
"""
import hashlib
import io as _io
import weakref
from typing import List, Optional

import numpy as np
import tensorflow as tf

from tflottery import models
from tflottery.errors import TfLotteryError
from tflottery.masking.assign import zero_pruned_weights
from tflottery.masking.walk import masked_layers, masked_pairs
from tflottery.masking.wrap import wrap
from tflottery.runs import io, layout

FORMAT = 2

# model -> the checkpoint directory (holding tensors) whose weights it was last loaded
# with, or the _Initialisation it holds; consumed by the next named checkpoint saved
# from that model.
_loaded_from = weakref.WeakKeyDictionary()


class _Initialisation:
    """A seeded initialisation: how to build it (a JSON-able recipe) and its values (those
    of the variables a checkpoint stores)."""

    def __init__(self, recipe: dict, values: list):
        self.recipe, self.values = recipe, values

    def sha256(self) -> str:
        sha = hashlib.sha256()
        for value in self.values:
            sha.update(repr((value.dtype.str, value.shape)).encode())
            sha.update(value.tobytes())
        return sha.hexdigest()


def note_initialisation(model, recipe: dict, values: list) -> None:
    """`model` now holds the initialisation `recipe` builds (see `build_initialisation`);
    `values`: every variable of it, in `model.variables` order."""
    _loaded_from[model] = _Initialisation(recipe, _stored_subset(model, values))


def build_initialisation(recipe: dict) -> list:
    """The values of the stored variables (see `stored_variables`) of the masked network
    `recipe` names, as initialised: {"model", "input_shape", "num_classes", "seed",
    "options", "unmasked_layers"}."""
    plain = models.build(recipe["model"], tuple(recipe["input_shape"]), recipe["num_classes"],
                         seed=recipe["seed"], **recipe["options"])
    fresh = wrap(plain, unmasked_layers=tuple(recipe["unmasked_layers"]))
    return [np.asarray(v.numpy()) for v in stored_variables(fresh)]


def _rebuilds(init: _Initialisation) -> bool:
    """Whether its recipe builds its values (one build of the network: a caller that
    noted the wrong recipe gets a stored copy, never a record that cannot be restored)."""
    return _Initialisation(init.recipe, build_initialisation(init.recipe)).sha256() == \
        init.sha256()


def _stored_subset(model, values: list) -> list:
    stored = {id(v) for v in stored_variables(model)}
    return [np.asarray(value) for v, value in zip(model.variables, values) if id(v) in stored]


class _Variables(tf.Module):
    """The variables a named checkpoint stores, tracked as a list: keys 'model/v/<i>/...'."""

    def __init__(self, variables):
        super().__init__(name=None)
        self.v = list(variables)


def stored_variables(model) -> List[tf.Variable]:
    """The variables of `model` that a named checkpoint stores: all but the masks."""
    masks = {id(m) for _, m in masked_pairs(model).values()} if masked_layers(model) else set()
    return [v for v in model.variables if id(v) not in masks]


def _prefix(directory: str) -> str:
    return layout.file(directory, layout.CHECKPOINT_PREFIX)


def _keep(model) -> dict:
    return {name: m.numpy() > 0 for name, (_, m) in masked_pairs(model).items()} \
        if masked_layers(model) else {}


def _mask_bits(model) -> bytes:
    buffer = _io.BytesIO()
    # Compressed: a dense mask's bits are all ones.
    np.savez_compressed(buffer, **{name: np.packbits(keep.ravel())
                                   for name, keep in _keep(model).items()})
    return buffer.getvalue()


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            if not chunk:
                return sha.hexdigest()
            sha.update(chunk)


def _source_values(source, count: int) -> Optional[list]:
    """The stored variables' values of a source (a checkpoint directory or an
    _Initialisation), or None if it does not hold `count` of them."""
    if isinstance(source, _Initialisation):
        return source.values if len(source.values) == count else None
    try:
        reader = tf.train.load_checkpoint(_prefix(source))
        keys = [f"model/v/{i}/.ATTRIBUTES/VARIABLE_VALUE" for i in range(count)]
        if len(reader.get_variable_to_shape_map()) != count + 1:   # + the object graph
            return None
        return [reader.get_tensor(key) for key in keys]
    except (tf.errors.OpError, ValueError):
        return None


def _equals_under_mask(model, source) -> bool:
    """Whether `model`'s stored variables are exactly `source`'s values with the entries
    the model's masks prune set to +0.0."""
    variables = stored_variables(model)
    values = _source_values(source, len(variables))
    if values is None:
        return False
    pruned_of = {id(w): keep for (w, _), keep in
                 zip(masked_pairs(model).values(), _keep(model).values())} \
        if masked_layers(model) else {}
    for var, expected in zip(variables, values):
        keep = pruned_of.get(id(var))
        if keep is not None and not keep.all():
            expected = np.where(keep, expected, np.zeros((), expected.dtype))
        value = np.asarray(var.numpy())
        if expected.dtype != value.dtype or expected.shape != value.shape \
                or expected.tobytes() != value.tobytes():
            return False
    return True


def write(model, directory: str, write_tensors, may_refer: bool) -> dict:
    """Store `model` as the named checkpoint in `directory` (all but its info.json);
    returns what its info.json records of the files.

    write_tensors(prefix): writes the stored variables' checkpoint (the caller's,
    which cleans up a failed write).  may_refer: whether the checkpoint may be a
    reference to what the model was loaded with: only a phase's 'init' is, so that
    what a phase stores does not depend on which of its checkpoints a killed
    attempt had written already.
    """
    io.makedirs(directory)
    record = {"format": FORMAT}
    source = _loaded_from.pop(model, None) if may_refer else None
    _loaded_from.pop(model, None)
    stale = tf.io.gfile.glob(_prefix(directory) + ".*")   # of an attempt killed before info.json
    if isinstance(source, _Initialisation) and not _rebuilds(source):
        source = None
    if source is not None and _equals_under_mask(model, source):
        if isinstance(source, _Initialisation):
            record["weights_from_seed"] = dict(source.recipe, sha256=source.sha256())
        else:
            record["weights_from"] = layout.relative(source, directory)
        for path in stale:
            io.remove(path)
        names = []
    else:
        write_tensors(_prefix(directory))
        names = [p.rsplit("/", 1)[-1] for p in tf.io.gfile.glob(_prefix(directory) + ".*")]
    io.atomic_write_bytes(layout.file(directory, layout.CHECKPOINT_MASK_BITS), _mask_bits(model))
    names.append(layout.CHECKPOINT_MASK_BITS)
    record["files"] = {name: _file_record(layout.file(directory, name)) for name in sorted(names)}
    return record


def _file_record(path: str) -> dict:
    """Size, and the sha256 of a small file: `check` only sizes tensor data (the index's
    CRC32Cs cover it), so hashing it would read every tensor back for nothing."""
    record = {"size": tf.io.gfile.stat(path).length}
    if not _is_tensor_data(path.rsplit("/", 1)[-1]):
        record["sha256"] = _digest(path)
    return record


def is_recorded(info: dict) -> bool:
    """Whether a checkpoint's info.json is of this format (else: the layout before #26)."""
    return isinstance(info, dict) and info.get("format") == FORMAT


def tensors_dir(directory: str, info: dict) -> str:
    """The checkpoint directory that holds the tensors of the one in `directory`."""
    rel = info.get("weights_from")
    return directory if rel is None else layout.resolve(directory, rel)


def check(directory: str, info: dict) -> Optional[str]:
    """What is wrong with the files of the recorded checkpoint in `directory`, or None."""
    for name, want in sorted(info["files"].items()):
        path = layout.file(directory, name)
        if not io.exists(path):
            return f"{name} is missing"
        size = tf.io.gfile.stat(path).length
        if size != want["size"]:
            return f"{name} has {size} bytes, {want['size']} when written"
        if not _is_tensor_data(name) and _digest(path) != want["sha256"]:
            return f"{name} is not the file written (sha256 differs)"
    return None


def _is_tensor_data(name: str) -> bool:
    """A checkpoint's tensor data file: on a check only sized (the index, hashed, holds a
    CRC32C of every tensor, which reading the tensors verifies)."""
    return ".data-" in name


def restore(model, directory: str, info: dict) -> None:
    """Load the recorded checkpoint in `directory` into `model` (see module docstring)."""
    seeded, rel = info.get("weights_from_seed"), info.get("weights_from")
    if seeded is not None:
        recipe = {k: v for k, v in seeded.items() if k != "sha256"}
        source = _Initialisation(recipe, build_initialisation(recipe))
        if source.sha256() != seeded["sha256"]:
            raise TfLotteryError(
                f"{directory}: its weights are the initialisation of seed {recipe['seed']}, "
                "but building it again here gives other values than when it was written "
                "(another TensorFlow or Keras version?); use the versions the run was made with")
        for var, value in zip(stored_variables(model), source.values):
            var.assign(value)
    elif rel is not None:
        # Its weights are the other checkpoint's, whatever form that one has now (written
        # again after damage, it may itself be a reference): load it, then this one's masks.
        target = layout.resolve(directory, rel)
        restore(model, target, io.read_json(layout.file(target, layout.CHECKPOINT_INFO)))
        source = _loaded_from[model]
    else:
        source = directory
        tf.train.Checkpoint(model=_Variables(stored_variables(model))).read(
            _prefix(source)).assert_existing_objects_matched()
    if masked_layers(model):
        with tf.io.gfile.GFile(layout.file(directory, layout.CHECKPOINT_MASK_BITS), "rb") as f:
            data = f.read()
        with np.load(_io.BytesIO(data), allow_pickle=False) as bits:
            for name, (_, mask_var) in masked_pairs(model).items():
                size = int(np.prod(mask_var.shape))
                keep = np.unpackbits(bits[name], count=size).astype(bool).reshape(mask_var.shape)
                mask_var.assign(keep.astype(mask_var.dtype.as_numpy_dtype))
        for wrapper in masked_layers(model):
            wrapper.mask_changed()
        if seeded is not None or rel is not None:    # another's weights, under these masks
            zero_pruned_weights(model)
    _loaded_from[model] = source


def checkpoint_of(model) -> tf.train.Checkpoint:
    """The tf.train.Checkpoint that writes a named checkpoint's tensors of `model`."""
    return tf.train.Checkpoint(model=_Variables(stored_variables(model)))
