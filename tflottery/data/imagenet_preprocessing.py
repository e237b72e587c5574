"""ImageNet image preprocessing as in Google's reference TPU ResNet-50.

The geometry follows tensorflow/tpu models/official/resnet/resnet_preprocessing.py:

  training    Inception-style random crop: a box covering 8%-100% of the image
              area with aspect ratio in [3/4, 4/3] (10 attempts, at least 10%
              of the whole image covered), decoded straight from the JPEG
              with decode_and_crop_jpeg.  When sampling fails the op returns
              the whole image; like the reference we then take the
              evaluation center crop instead.  Bicubic resize to image_size,
              random horizontal flip.
  evaluation  The "padded" center crop: a square of side
              int(image_size / (image_size + 32) * min(h, w)) (0.875 of the
              shorter side at 224), offset ((h - side + 1) // 2,
              (w - side + 1) // 2), bicubic resize to image_size.

Differences from the reference, each deliberate:
  * every random choice is a stateless op of an explicit seed (the caller
    derives it from (run seed, epoch, position), see imagenet.py), so a
    resumed run repeats the augmentation bit for bit;
  * resizing is TF2's tf.image.resize(method='bicubic') (half-pixel
    centres), not the TF1 resize_bicubic of the reference, and its output is
    clipped to [0, 255]: bicubic overshoots, and clipping keeps the
    normalised inputs in the range a real image can have;
  * normalisation happens here (float32 in the input pipeline) rather than
    inside the model function on the TPU.
Images that are not JPEG (never the case in tfds imagenet2012, whose builder
converts its one PNG and its CMYK files) are decoded whole, then cropped.
"""
import tensorflow as tf

CROP_PADDING = 32                 # evaluation crop side = image_size / (image_size + 32) * shorter side
AREA_RANGE = (0.08, 1.0)          # fraction of the image area a training crop covers
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
MIN_OBJECT_COVERED = 0.1
MAX_ATTEMPTS = 10


def image_shape(image_bytes: tf.Tensor) -> tf.Tensor:
    """[height, width, channels] (int32) of an encoded image, from the header alone when it is a JPEG."""
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.io.extract_jpeg_shape(image_bytes),
                   lambda: tf.shape(_decode_whole(image_bytes), out_type=tf.int32))


def _decode_whole(image_bytes):
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def decode_crop(image_bytes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """The uint8 RGB pixels of window [y, x, height, width]; a JPEG is decoded only there."""
    def crop_other():
        y, x, h, w = tf.unstack(window)
        return _decode_whole(image_bytes)[y:y + h, x:x + w, :]
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3),
                   crop_other)


def center_crop_window(shape: tf.Tensor, image_size: int) -> tf.Tensor:
    """The evaluation window [y, x, side, side] of an image of shape [h, w, ...] (int32).

    side = int(image_size / (image_size + 32) * min(h, w)), computed in float32
    as the reference does, and at least 1 so that tiny images still decode.
    """
    h, w = shape[0], shape[1]
    ratio = image_size / (image_size + CROP_PADDING)
    side = tf.cast(ratio * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bicubic resize of uint8 pixels to [image_size, image_size, 3], float32 clipped to [0, 255]."""
    out = tf.image.resize(image, [image_size, image_size], method=tf.image.ResizeMethod.BICUBIC)
    return tf.clip_by_value(tf.ensure_shape(out, [image_size, image_size, 3]), 0.0, 255.0)


def eval_image(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Center crop + bicubic resize: float32 pixels in [0, 255], [image_size, image_size, 3]."""
    window = center_crop_window(image_shape(image_bytes), image_size)
    return resize(decode_crop(image_bytes, window), image_size)


def train_image(image_bytes: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """Random-area crop + bicubic resize + random flip, a pure function of (image, seed int[2])."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = image_shape(image_bytes)
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=whole, seed=crop_seed, min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE, max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    # The reference's test for a failed sample: the "crop" is the whole image.
    failed = tf.logical_and(tf.equal(size[0], shape[0]), tf.equal(size[1], shape[1]))
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.cond(failed,
                    lambda: eval_image(image_bytes, image_size),
                    lambda: resize(decode_crop(image_bytes, window), image_size))
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def normalise(image: tf.Tensor, mean, std) -> tf.Tensor:
    """Pixels in [0, 255] -> (pixels / 255 - mean) / std, per RGB channel."""
    return (image / 255.0 - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def scale_symmetric(image: tf.Tensor) -> tf.Tensor:
    """Pixels in [0, 255] -> [-1, 1], as the reference TPU Inception-v3 feeds its network."""
    return image / 127.5 - 1.0
