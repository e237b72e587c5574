"""`Mask`: which weights survive pruning, as plain NumPy booleans.

A Mask is a value, independent of any model or device: it maps each stable
weight name ("dense_1/kernel") to a bool array (True = kept).  Keeping it
outside TensorFlow lets pruning rules be ordinary NumPy, lets masks be saved
and compared across runs, and lets one mask fit the wrapped model, its
exported twin, and the same architecture under any distribution strategy.
"""
import io
import zipfile
from collections.abc import Mapping
from typing import Dict

import numpy as np
import tensorflow as tf

from tflottery.errors import ConfigError, MaskMismatchError, first_few
from tflottery.keras_compat import mask_values
from tflottery.runs import io as runs_io
from tflottery.runs import layout

MASK_FILENAME = layout.MASK_FILE
REPORT_FILENAME = layout.MASK_REPORT


def _as_bool_array(name: str, value) -> np.ndarray:
    out = mask_values(value, f"mask entry {name!r}").copy()
    out.setflags(write=False)  # a Mask is a value: no silent edits through getitem
    return out


def _counts(total: int, remaining: int) -> Dict:
    density = remaining / total if total else 1.0
    return {"num_weights": total, "num_remaining": remaining,
            "density": density, "sparsity": 1.0 - density}


def _npz(arrays: Dict[str, np.ndarray]) -> bytes:
    """The bytes of an .npz of `arrays` (what np.load reads), deflated at zlib level 1.

    np.savez_compressed deflates at level 6: for LeNet-300-100's mask (bools,
    1 byte a weight before compression) 23 ms a save, every IMP level; level 1
    takes 2.4 ms and keeps 0.22 of the bytes instead of 0.16 (a random mask of
    density 0.5; sparser masks shrink more at either level).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as npz:
        for name, array in arrays.items():
            with npz.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


class Mask(Mapping):
    """Immutable mapping stable weight name -> NumPy bool array (True = kept)."""

    def __init__(self, arrays: Mapping):
        self._arrays = {str(name): _as_bool_array(str(name), value)
                        for name, value in dict(arrays).items()}

    # -- mapping ---------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return set(self) == set(other) and all(
            self[k].shape == other[k].shape and np.array_equal(self[k], other[k]) for k in self)

    __hash__ = None  # equal masks must hash equal; arrays are not hashable

    def __repr__(self) -> str:
        return (f"Mask({len(self)} weights, {self.num_remaining}/{self.num_weights} kept, "
                f"sparsity={self.sparsity:.4f})")

    # -- counts ----------------------------------------------------------
    @property
    def num_weights(self) -> int:
        return int(sum(a.size for a in self._arrays.values()))

    @property
    def num_remaining(self) -> int:
        return int(sum(np.count_nonzero(a) for a in self._arrays.values()))

    @property
    def density(self) -> float:
        """Fraction kept; 1.0 for an empty mask (nothing is pruned)."""
        return _counts(self.num_weights, self.num_remaining)["density"]

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def report(self) -> Dict:
        """JSON-able per-weight and total counts, density and sparsity."""
        layers = {}
        for name, array in self._arrays.items():
            layers[name] = {"shape": list(array.shape),
                            **_counts(int(array.size), int(np.count_nonzero(array)))}
        return {"layers": layers, "total": _counts(self.num_weights, self.num_remaining)}

    # -- files -----------------------------------------------------------
    def save(self, directory: str) -> None:
        """Write `mask.npz` and a human-readable `sparsity.json` to `directory`.

        Uses tf.io.gfile so `directory` may be a gs:// path.
        """
        tf.io.gfile.makedirs(directory)
        # The report first: mask.npz is what marks the mask as saved.
        runs_io.atomic_write_json(layout.file(directory, REPORT_FILENAME), self.report())
        runs_io.atomic_write_bytes(layout.file(directory, MASK_FILENAME), _npz(self._arrays))

    @classmethod
    def load(cls, directory: str) -> "Mask":
        path = layout.file(directory, MASK_FILENAME)
        if not tf.io.gfile.exists(path):
            raise ConfigError(
                f"no mask at {path}: expected a {MASK_FILENAME} written by Mask.save()")
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return cls({name: npz[name] for name in npz.files})

    # -- models ----------------------------------------------------------
    @classmethod
    def ones_like(cls, model) -> "Mask":
        """The mask that keeps every prunable weight of `model`."""
        from tflottery.masking.walk import prunable_variables
        return cls({name: np.ones(var.shape, np.bool_)
                    for name, var in prunable_variables(model).items()})

    def validate(self, model) -> None:
        """Raise MaskMismatchError unless this mask covers exactly model's prunable weights."""
        from tflottery.masking.walk import prunable_variables
        self.check_shapes({name: tuple(var.shape) for name, var in
                           prunable_variables(model).items()})

    def check_shapes(self, shapes: Mapping) -> None:
        """Like validate(), against a {stable name: shape} mapping.

        The error names the first few weights of each kind of mismatch and
        counts the rest (a ResNet's mask has hundreds of entries).
        """
        missing = [repr(name) for name in shapes if name not in self._arrays]
        extra = [repr(name) for name in self._arrays if name not in shapes]
        reshaped = [f"{name!r} has shape {tuple(shape)} but the mask has "
                    f"{tuple(self._arrays[name].shape)}"
                    for name, shape in shapes.items()
                    if name in self._arrays and tuple(self._arrays[name].shape) != tuple(shape)]
        problems = []
        if missing:
            problems.append(f"weights missing from the mask: {first_few(missing)}")
        if reshaped:
            problems.append(f"weights of another shape: {first_few(reshaped)}")
        if extra:
            problems.append(f"mask entries that are not prunable weights of the model: "
                            f"{first_few(extra)}")
        if problems:
            raise MaskMismatchError(
                "mask does not fit the model: " + "; ".join(problems) +
                "; use a mask made for this architecture (Mask.ones_like(model) for a fresh one)")
