"""Array loaders: every dataset ends up as four in-memory NumPy arrays.

Why arrays and not streaming tfds pipelines: the datasets of the Lottery
Ticket experiments (MNIST, CIFAR, TinyImageNet) fit in host memory, and with
the whole training set in memory the data order can be an explicit function
of (seed, epoch) -- see `pipeline.py` -- which makes rewinding, resuming and
instability analysis exactly reproducible.  Each loader here only *reads*:
images stay in their stored dtype (uint8 where possible, to keep memory at a
quarter of float32) and are normalised later, inside the tf.data pipeline.
"""
import dataclasses
import gzip
import os
import zipfile
from typing import Optional

import numpy as np

from tflottery.errors import DataNotAvailableError


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Train and test images [N, H, W, C] and int32 labels [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self):
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if x.ndim != 4 or len(x) != len(y) or y.ndim != 1:
                raise DataNotAvailableError(
                    f"{split} arrays do not fit: images {x.shape} must be [N,H,W,C] and labels "
                    f"{y.shape} must be [N] with the same N")
            if len(y) and y.min() < 0:
                raise DataNotAvailableError(f"{split} labels must be >= 0, found {y.min()}")


def _with_channels(x: np.ndarray) -> np.ndarray:
    """Grey images may come as [N, H, W]; the models always expect a channel axis."""
    return x[..., None] if x.ndim == 3 else x


def _labels(y) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int32)


# --- scikit-learn digits -------------------------------------------------------------------

DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TEST = 300


def load_digits(data_dir: Optional[str] = None) -> Arrays:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16): works offline.

    The split is fixed: a permutation by np.random.default_rng(0); its first 300
    indices are the test set, the other 1,497 the training set, each kept in the
    original file order.  `data_dir` is ignored (the data ships with sklearn).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = _with_channels(bunch.images.astype(np.uint8))  # integer values 0..16
    y = _labels(bunch.target)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x))
    test, train = np.sort(perm[:DIGITS_NUM_TEST]), np.sort(perm[DIGITS_NUM_TEST:])
    return Arrays(x[train], y[train], x[test], y[test])


# --- MNIST from IDX files --------------------------------------------------------------------

MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_LOCAL_NUM_TRAIN = 8000
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension; images: 3 dimensions (uint8 data)


def read_idx(path: str) -> np.ndarray:
    """Parse a (gzipped) IDX file of unsigned bytes, checking its magic number.

    Format (big endian): int32 magic (0x00000801 labels / 0x00000803 images),
    one int32 per dimension, then the uint8 data.  We parse it ourselves so the
    offline path needs nothing beyond NumPy.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataNotAvailableError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 8:
        raise DataNotAvailableError(f"{path} is not an IDX file: only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataNotAvailableError(
            f"{path} is not an MNIST IDX file: magic number {magic:#010x}, expected 0x00000801 or 0x00000803")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DataNotAvailableError(
            f"{path} is truncated or corrupt: header says shape {shape} but it holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def default_mnist_dir() -> str:
    """$TFLOTTERY_MNIST_DIR, else `<project root>/../shared/data/mnist` (project root holds tflottery/)."""
    if os.environ.get("TFLOTTERY_MNIST_DIR"):
        return os.environ["TFLOTTERY_MNIST_DIR"]
    project_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.normpath(os.path.join(project_root, "..", "shared", "data", "mnist"))


def load_mnist_local(data_dir: Optional[str] = None) -> Arrays:
    """The real 10,000-image MNIST *test* set from IDX files, split 8,000 train / 2,000 test.

    Offline machines cannot fetch MNIST through tfds; these two files are what
    is at hand.  The first 8,000 images (file order) train, the last 2,000 test.
    """
    directory = data_dir or default_mnist_dir()
    paths = [os.path.join(directory, name) for name in (MNIST_IMAGES, MNIST_LABELS)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DataNotAvailableError(
            f"MNIST IDX files not found: {', '.join(missing)}; put {MNIST_IMAGES} and {MNIST_LABELS} there, "
            f"or set DatasetHparams.data_dir (or $TFLOTTERY_MNIST_DIR) to the directory holding them")
    x, y = _with_channels(read_idx(paths[0])), _labels(read_idx(paths[1]))
    if len(x) != len(y):
        raise DataNotAvailableError(f"{paths[0]} has {len(x)} images but {paths[1]} has {len(y)} labels")
    n = MNIST_LOCAL_NUM_TRAIN
    if len(x) <= n:
        raise DataNotAvailableError(f"{paths[0]} has {len(x)} images; the 8,000/rest split needs more than {n}")
    return Arrays(x[:n], y[:n], x[n:], y[n:])


# --- local .npz files -------------------------------------------------------------------------

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz_file(path: str) -> Arrays:
    """An .npz with x_train, y_train, x_test, y_test; images [N,H,W] or [N,H,W,C], uint8 or float."""
    if not path or not os.path.isfile(path):
        raise DataNotAvailableError(
            f"npz file not found: {path!r}; set DatasetHparams.data_dir to an .npz file holding {', '.join(NPZ_KEYS)}")
    try:
        # allow_pickle=False: an .npz of arrays needs no pickles, and a file that
        # is not one (random bytes, a pickle) is refused in one line below.
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataNotAvailableError(f"{path} lacks the arrays {missing}; it must hold {', '.join(NPZ_KEYS)}")
            xs = [f[k] for k in ("x_train", "x_test")]
            ys = [_labels(f[k]) for k in ("y_train", "y_test")]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        # numpy's own text (about allow_pickle, for random bytes) would mislead.
        raise DataNotAvailableError(
            f"{path} is not a readable .npz archive of arrays ({type(e).__name__}); set "
            f"DatasetHparams.data_dir to an .npz file holding {', '.join(NPZ_KEYS)} "
            f"(numpy.savez)") from None
    xs = [_with_channels(x if x.dtype == np.uint8 else x.astype(np.float32)) for x in xs]
    return Arrays(xs[0], ys[0], xs[1], ys[1])


def load_npz(data_dir: Optional[str]) -> Arrays:
    """Generic local arrays: `data_dir` is the path of the .npz file itself."""
    return load_npz_file(data_dir)


TINY_IMAGENET_FILE = "tiny_imagenet.npz"


def load_tiny_imagenet(data_dir: Optional[str]) -> Arrays:
    """TinyImageNet (not in the tfds catalog) from `<data_dir>/tiny_imagenet.npz`.

    Expected format: x_train uint8 [100000, 64, 64, 3], y_train int [100000] in
    0..199, x_test uint8 [10000, 64, 64, 3] (the official validation set, whose
    labels are public, used as the test set), y_test int [10000].
    """
    if not data_dir:
        raise DataNotAvailableError(
            f"tiny_imagenet needs DatasetHparams.data_dir: a directory holding {TINY_IMAGENET_FILE} "
            f"(x_train, y_train, x_test, y_test; see tflottery/data/sources.py)")
    return load_npz_file(os.path.join(data_dir, TINY_IMAGENET_FILE))


# --- tensorflow-datasets ----------------------------------------------------------------------

def _check_network(host: str = "storage.googleapis.com", timeout: float = 5.0) -> None:
    """Fail in seconds when offline, instead of sitting in tfds's download retries
    (urllib3 backs off for minutes before giving up on an unreachable host)."""
    import socket
    with socket.create_connection((host, 443), timeout=timeout):
        pass


def load_tfds(tfds_name: str, data_dir: Optional[str]) -> Arrays:
    """Both splits of a tfds image dataset, read whole into NumPy.

    If the data is not prepared in `data_dir`, we try `download_and_prepare`
    (so a machine with internet just works) unless $TFLOTTERY_TFDS_DOWNLOAD=0.
    Offline this fails within a second (name resolution fails, or a download
    dependency is missing); every such failure, whatever its type, becomes one
    DataNotAvailableError line telling the user how to prepare the data.
    """
    import tensorflow_datasets as tfds

    def unavailable(cause) -> DataNotAvailableError:
        where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
        return DataNotAvailableError(
            f"dataset {tfds_name!r} is not available offline in {where}: run `tfds build {tfds_name}` "
            f"(or python -c 'import tensorflow_datasets as tfds; tfds.load(\"{tfds_name}\")') on a machine "
            f"with internet and point DatasetHparams.data_dir at it [{type(cause).__name__}]")

    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            if os.environ.get("TFLOTTERY_TFDS_DOWNLOAD", "1") == "0":
                raise FileNotFoundError("not prepared and downloads are disabled")
            _check_network()
            builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 -- offline failures come in many types
        raise unavailable(e) from e

    out = []
    for split in ("train", "test"):
        # Chunks of 4,096, not batch_size=-1: tfds sizes that one batch from the
        # split metadata, which is absent (-> sys.maxsize, a crash) under mock_data.
        ds = builder.as_dataset(split=split).map(lambda ex: (ex["image"], ex["label"])).batch(4096)
        chunks = list(tfds.as_numpy(ds))
        if not chunks:
            raise DataNotAvailableError(f"tfds dataset {tfds_name!r} has an empty {split!r} split in {data_dir}")
        out += [_with_channels(np.concatenate([c[0] for c in chunks])),
                _labels(np.concatenate([c[1] for c in chunks]))]
    return Arrays(*out)


# --- synthetic --------------------------------------------------------------------------------

SYNTHETIC_SEED = 1234


def load_synthetic(data_dir: Optional[str] = None, num_train: int = 256, num_test: int = 64,
                   shape=(8, 8, 1), num_classes: int = 10) -> Arrays:
    """Small, learnable random data for tests: each class has its own mean image.

    Images are uint8: a class template (uniform 0..255) plus Gaussian noise of
    std 40, clipped.  Fixed generator seed, so every call returns the same data.
    """
    rng = np.random.default_rng(SYNTHETIC_SEED)
    templates = rng.uniform(0, 255, size=(num_classes,) + tuple(shape))

    def make(n):
        y = rng.integers(0, num_classes, size=n).astype(np.int32)
        x = templates[y] + rng.normal(0, 40, size=(n,) + tuple(shape))
        return np.clip(np.round(x), 0, 255).astype(np.uint8), y

    (xa, ya), (xb, yb) = make(num_train), make(num_test)
    return Arrays(xa, ya, xb, yb)
