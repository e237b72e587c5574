"""Training augmentations as stateless functions of (image, seed).

Why stateless: the augmentation of an example must be a pure function of
(run seed, epoch, position in the epoch) -- see `pipeline.example_seed` -- so
that a resumed run, or a run on a different number of replicas, sees exactly
the same augmented images.  Stateful tf.random ops or tf.image.random_* would
depend on how many ops ran before.

Augmentation is applied to the *raw* pixels (before normalisation), so the
padding is black (zero), as in torchvision's RandomCrop(32, padding=4) used by
the reference PyTorch code (open_lth).
"""
import functools

import tensorflow as tf


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
    """Zero-pad by `pad` on each side, take a random crop of the original size, flip left-right at random.

    image: [H, W, C] (any dtype); seed: int [2].  Each of the (2*pad+1)^2
    offsets and each flip is equally likely.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, size=shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def pad_crop_flip_fn(pad: int):
    """`pad_crop_flip` with a fixed pad, as a named (image, seed) -> image function."""
    fn = functools.partial(pad_crop_flip, pad=pad)
    fn.__name__ = f"pad{pad}_crop_flip"
    return fn
