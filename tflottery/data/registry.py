"""The dataset catalogue: name -> how to load it and how to preprocess it.

One table so that a reader sees every dataset's constants side by side.
A `Source` says where the arrays come from and how raw pixels become model
inputs: x = (raw / pixel_scale - mean) / std, per channel, applied inside the
tf.data pipeline (arrays stay uint8 in memory).  `augment` (image, seed) ->
image runs on the raw pixels of training examples when
DatasetHparams.augment is true.  A dataset too large for memory (ImageNet)
has a `build` instead of a `load`: it returns its own streaming dataset with
the interface of pipeline.Dataset.

`sizes` is the table of what a plan needs without the data: the split
sizes and image shape (with `num_classes`, what building the model for
validation needs).  `--dry_run` plans with it and reads no data
(data/planning.py), so the plan of a TPU job can be previewed on a laptop
without ImageNet; a dataset without sizes (npz, or a user's) is read if it
is at hand.  The numbers are the tfds metadata (MNIST, CIFAR, ImageNet
2012), the dataset's documentation (TinyImageNet), or what our own loader
returns (digits, mnist_local, synthetic); tests/test_dry_run.py checks the
plan from the table against the plan from the loaded data.
"""
import dataclasses
import functools
from typing import Callable, Optional, Tuple

from tflottery.data import augment, sources
from tflottery.registry import Registry


@dataclasses.dataclass(frozen=True)
class Source:
    """How to get one dataset's arrays and turn its pixels into inputs.

    load: data_dir -> sources.Arrays (in-memory datasets).
    build: (DatasetHparams, Source, infeed_dtype) -> a streaming dataset with
      the interface of pipeline.Dataset; data.build calls it instead of
      `load` when set.
    plan: (DatasetHparams, Source) -> the DatasetInfo that `build` gives,
      from `sizes`, reading nothing (a streamed dataset's input shape and
      checks are its own); a Source with `build` and `sizes` needs it.
    pixel_scale: raw values are divided by this; None means 255 for uint8
      arrays and 1 for float arrays (the generic npz source).
    mean, std: per-channel (or single) constants applied after scaling.
    augment: (raw image [H,W,C], seed int[2]) -> image, or None.
    num_classes: None means max label + 1 over both splits.
    sizes: the whole train and test splits' sizes and the stored image shape,
      or None when unknown (npz: they are the user's file's); a Source with
      sizes needs num_classes too.
    """

    load: Optional[Callable[[Optional[str]], sources.Arrays]] = None
    pixel_scale: Optional[float] = None
    mean: Tuple[float, ...] = (0.0,)
    std: Tuple[float, ...] = (1.0,)
    augment: Optional[Callable] = None
    num_classes: Optional[int] = None
    build: Optional[Callable] = None
    sizes: Optional["Sizes"] = None
    plan: Optional[Callable] = None

    def __post_init__(self):
        if self.sizes is not None and self.num_classes is None:
            raise ValueError("a Source with sizes needs num_classes (the plan builds the model)")
        if self.sizes is not None and self.build is not None and self.plan is None:
            raise ValueError("a streamed Source (build) with sizes needs plan (its DatasetInfo from them)")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A dataset's whole splits, before holdout_fraction and num_train_examples
    (splits.split_sizes applies those), and its stored images' shape [H, W, C]
    (None for a streamed dataset, whose Source.plan gives its input shape)."""

    num_train: int
    num_test: int
    input_shape: Optional[Tuple[int, int, int]]


DATASETS: Registry[Source] = Registry("dataset")

# Normalisation constants.  MNIST: the usual mean/std of the MNIST training
# pixels after /255.  CIFAR: per-channel mean and std of the training-set
# pixels after /255 (the population std, not the often-quoted
# 0.2023/0.1994/0.2010, which is a mean of per-image stds).  TinyImageNet: the
# commonly used training-set statistics.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
# ImageNet: the RGB mean/std of [0, 1] pixels used by Google's reference TPU
# ResNet-50 (there as 255 * these) and by torchvision.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Sizes (train, test, image shape), one line per dataset: see the module docstring.
DIGITS_SIZES = Sizes(1497, 300, (8, 8, 1))               # sources.load_digits: 1,797 split 1,497 / 300
SYNTHETIC_SIZES = Sizes(256, 64, (8, 8, 1))              # sources.load_synthetic's defaults
MNIST_LOCAL_SIZES = Sizes(8000, 2000, (28, 28, 1))       # the 10,000 MNIST test images split 8,000 / 2,000
MNIST_SIZES = Sizes(60000, 10000, (28, 28, 1))           # tfds mnist
CIFAR_SIZES = Sizes(50000, 10000, (32, 32, 3))           # tfds cifar10 and cifar100
TINY_IMAGENET_SIZES = Sizes(100000, 10000, (64, 64, 3))  # 500 train + 50 validation images x 200 classes
# tfds imagenet2012 'train' and 'validation' (our 'test'); its JPEGs vary in size, its
# input is DatasetHparams.image_size (imagenet.py).
IMAGENET_SIZES = Sizes(1281167, 50000, None)

# Offline quickstart: 1,497 train / 300 test, values /16 -> [0, 1], no augmentation.
DATASETS.register("digits", Source(sources.load_digits, pixel_scale=16.0, num_classes=10, sizes=DIGITS_SIZES))
DATASETS.register("synthetic", Source(sources.load_synthetic, pixel_scale=255.0, num_classes=10,
                                      sizes=SYNTHETIC_SIZES))
DATASETS.register("mnist_local", Source(sources.load_mnist_local, 255.0, MNIST_MEAN, MNIST_STD, num_classes=10,
                                        sizes=MNIST_LOCAL_SIZES))
DATASETS.register("mnist", Source(functools.partial(sources.load_tfds, "mnist"), 255.0, MNIST_MEAN, MNIST_STD,
                                  num_classes=10, sizes=MNIST_SIZES))
# CIFAR: zero-pad 4, random 32x32 crop, random horizontal flip (He et al. 2016; thesis).
DATASETS.register("cifar10", Source(functools.partial(sources.load_tfds, "cifar10"), 255.0, CIFAR10_MEAN,
                                    CIFAR10_STD, augment.pad_crop_flip_fn(4), num_classes=10, sizes=CIFAR_SIZES))
DATASETS.register("cifar100", Source(functools.partial(sources.load_tfds, "cifar100"), 255.0, CIFAR100_MEAN,
                                     CIFAR100_STD, augment.pad_crop_flip_fn(4), num_classes=100,
                                     sizes=CIFAR_SIZES))
# TinyImageNet 64x64: the CIFAR recipe scaled with the image: zero-pad 8, random 64x64 crop, flip.
DATASETS.register("tiny_imagenet", Source(sources.load_tiny_imagenet, 255.0, TINY_IMAGENET_MEAN,
                                          TINY_IMAGENET_STD, augment.pad_crop_flip_fn(8), num_classes=200,
                                          sizes=TINY_IMAGENET_SIZES))
DATASETS.register("npz", Source(sources.load_npz))


def _build_imagenet(hparams, source, infeed_dtype="float32"):
    # Imported on use: the streaming module imports tensorflow_datasets.
    from tflottery.data import imagenet
    return imagenet.build(hparams, source, infeed_dtype)


def _plan_imagenet(hparams, source):
    from tflottery.data import imagenet
    return imagenet.planned_info(hparams, source)


# ImageNet streamed from tfds records; the reference TPU ResNet-50 input (see data/imagenet.py).
DATASETS.register("imagenet2012", Source(pixel_scale=255.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                         num_classes=1000, build=_build_imagenet, sizes=IMAGENET_SIZES,
                                         plan=_plan_imagenet))
