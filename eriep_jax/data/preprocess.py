"""Per-example preprocessing in TensorFlow for the tf.data input pipelines.

Every function takes one float32 image (H, W, C) in [0, 1] and returns a
float32 image in [0, 1]; normalisation belongs to the model. Random functions
are stateless: they take a `seed` tensor of shape (2,), derived from
(config seed, epoch, example position) by the pipeline, so an epoch's
augmentation is the same in every run and after every resume.

Training augmentations (`config.data.train_augment`):

  none       no augmentation (the paper's "standard" setting).
  crop_flip  zero-pad 4, random crop back to H x W, random horizontal flip
             (the usual CIFAR recipe; torchvision RandomCrop(32, padding=4) +
             RandomHorizontalFlip()).
  imagenet   random-resized crop to image_size (default 224) + horizontal flip,
             torchvision RandomResizedCrop's defaults: area (0.08, 1), aspect
             ratio (3/4, 4/3), 10 attempts, falling back to the whole image.

Evaluation (`config.data.eval_crop`): `none` (optionally resized to
image_size) or `center`: resize the shorter side to image_size * 256 / 224
(256 for 224) and take the central image_size crop, the ImageNet protocol.
"""

import tensorflow as tf

from eriep_jax.data.sources import EVAL_CROPS, IMAGENET_SIZE, TRAIN_AUGMENTS  # pylint: disable=unused-import

CIFAR_PADDING = 4
IMAGENET_RESIZE_RATIO = 256 / 224
IMAGENET_AREA = (0.08, 1.0)
IMAGENET_ASPECT = (3 / 4, 4 / 3)
IMAGENET_ATTEMPTS = 10


def to_float(image: tf.Tensor) -> tf.Tensor:
  """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32."""
  if image.dtype == tf.uint8:
    return tf.cast(image, tf.float32) / 255.0
  return tf.cast(image, tf.float32)


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Bilinear (antialiased when shrinking) resize to size x size.

  Bilinear weights are non-negative, so values stay in [0, 1].
  """
  return tf.image.resize(image, (size, size), method="bilinear", antialias=True)


def crop_flip(image: tf.Tensor, seed: tf.Tensor, *,
              padding: int = CIFAR_PADDING) -> tf.Tensor:
  """Zero-pads `padding` pixels, crops a random H x W window, flips with p=0.5."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  shape = tf.shape(image)
  padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  cropped = tf.image.stateless_random_crop(padded, shape, seed=seeds[0])
  return tf.image.stateless_random_flip_left_right(cropped, seed=seeds[1])


def _sample_window(shape: tf.Tensor, seed: tf.Tensor) -> tuple:
  begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.zeros([0, 0, 4], tf.float32), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=IMAGENET_ASPECT,
      area_range=IMAGENET_AREA, max_attempts=IMAGENET_ATTEMPTS,
      use_image_if_no_bounding_boxes=True)
  return begin[:2], box_size[:2]


def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, *,
                        size: int = IMAGENET_SIZE) -> tf.Tensor:
  """Random-resized crop to size x size and a random horizontal flip.

  Samples a window covering IMAGENET_AREA of the image with aspect ratio in
  IMAGENET_ASPECT (tf.image.stateless_sample_distorted_bounding_box, 10
  attempts, the whole image when all fail), resizes it bilinearly.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  begin, box = _sample_window(tf.shape(image), seeds[0])
  crop = tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([box, [-1]], 0))
  out = resize(to_float(crop), size)
  return tf.image.stateless_random_flip_left_right(out, seed=seeds[1])


def decode_random_resized_crop(encoded: tf.Tensor, seed: tf.Tensor, *,
                               channels: int, size: int = IMAGENET_SIZE) -> tf.Tensor:
  """`random_resized_crop` of an encoded image, decoding only the window of a JPEG.

  For JPEG bytes the window is sampled from the header's shape and only it is
  decoded (tf.image.decode_and_crop_jpeg), as in the Flax ImageNet example;
  other formats are decoded whole. Same seed, same window as
  `random_resized_crop` of the decoded image.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)

  def jpeg():
    begin, box = _sample_window(tf.image.extract_jpeg_shape(encoded), seeds[0])
    return tf.image.decode_and_crop_jpeg(encoded, tf.concat([begin, box], 0),
                                         channels=channels)

  def other():
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    begin, box = _sample_window(tf.shape(image), seeds[0])
    return tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([box, [-1]], 0))

  crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  out = resize(to_float(crop), size)
  return tf.image.stateless_random_flip_left_right(out, seed=seeds[1])


def center_crop(image: tf.Tensor, *, size: int = IMAGENET_SIZE) -> tf.Tensor:
  """Resizes the shorter side to size * 256 / 224, then crops size x size."""
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  short = round(size * IMAGENET_RESIZE_RATIO)
  scale = short / tf.minimum(h, w)
  new_h = tf.cast(tf.round(h * scale), tf.int32)
  new_w = tf.cast(tf.round(w * scale), tf.int32)
  image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear",
                          antialias=True)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return tf.slice(image, tf.stack([top, left, 0]), [size, size, -1])


def train_preprocess(image: tf.Tensor, seed: tf.Tensor, *, augment: str,
                     image_size: int | None) -> tf.Tensor:
  """Training preprocessing of one image; see the module docstring."""
  image = to_float(image)
  if augment == "imagenet":
    return random_resized_crop(image, seed, size=image_size or IMAGENET_SIZE)
  if augment == "crop_flip":
    image = crop_flip(image, seed)
  elif augment != "none":
    raise ValueError(f"unknown train_augment {augment!r}; use one of "
                     f"{', '.join(TRAIN_AUGMENTS)}")
  return resize(image, image_size) if image_size else image


def eval_preprocess(image: tf.Tensor, *, crop: str,
                    image_size: int | None) -> tf.Tensor:
  """Evaluation preprocessing of one image; `crop` is 'none' or 'center'."""
  image = to_float(image)
  if crop == "center":
    return center_crop(image, size=image_size or IMAGENET_SIZE)
  return resize(image, image_size) if image_size else image
