"""The built-in offline demo set: scikit-learn's 8x8 handwritten digits.

scikit-learn ships the UCI optical-recognition digits (1,797 images, 10
classes, pixel values 0..16) inside the package, so this set needs no download.
The images are scaled to [0, 1], resized bilinearly from 8x8 straight to
`size` x `size` (default 32, the CIFAR input size, so the CIFAR models run
unchanged; `config.data.image_size` picks another, e.g. the README demo's 16)
and repeated to 3 channels. The split
is a fixed stratified 80/20 split (`train_test_split(test_size=0.2,
stratify=labels, random_state=0)`): 1,437 train and 360 test images, each split
kept in the original file order. Batches then go through the same
preprocessing, sharding and device path as every other source.

scikit-learn is imported inside `load_demo`, so importing this module costs nothing; the
resize is numpy's own (`resize_bilinear`, TensorFlow's `tf.image.resize(..., 'bilinear')`
arithmetic, tested against it), so the demo set needs no TensorFlow.
"""

import functools

import numpy as np

DEMO_SIZE = 32
DEMO_SPLIT_SEED = 0
DEMO_TEST_FRACTION = 0.2
CLASS_NAMES = tuple(str(d) for d in range(10))


def _axis_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  # Half-pixel centres: output pixel i samples input position (i + 0.5) * in / out - 0.5,
  # clamped to the image, between its two neighbours.
  pos = (np.arange(out_size, dtype=np.float32) + 0.5) * np.float32(in_size / out_size) - 0.5
  lo = np.floor(pos)
  frac = (pos - lo).astype(np.float32)
  lo = lo.astype(np.int64)
  return np.clip(lo, 0, in_size - 1), np.clip(lo + 1, 0, in_size - 1), frac


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of float32 (N, H, W, C) to (N, size, size, C), without antialiasing.

  The arithmetic of ``tf.image.resize(images, (size, size), 'bilinear')``: half-pixel
  centres, edges clamped, rows then columns.
  """
  images = np.asarray(images, np.float32)
  top, bottom, fy = _axis_taps(images.shape[1], size)
  left, right, fx = _axis_taps(images.shape[2], size)
  fy, fx = fy[None, :, None, None], fx[None, None, :, None]
  rows_t, rows_b = images[:, top], images[:, bottom]
  tl, tr = rows_t[:, :, left], rows_t[:, :, right]
  bl, br = rows_b[:, :, left], rows_b[:, :, right]
  upper = tl + (tr - tl) * fx
  lower = bl + (br - bl) * fx
  return upper + (lower - upper) * fy


@functools.lru_cache(maxsize=2)
def load_demo(size: int = DEMO_SIZE) -> dict:
  """Loads, resizes and splits the digits once per process and size.

  Args:
    size: the side of the resized images (the digits are 8x8).

  Returns:
    {'train': (images, labels), 'test': (images, labels)} with float32 images
    (N, size, size, 3) in [0, 1] and int32 labels (N,).
  """
  if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
    raise ValueError(f"the demo set's image size must be a positive integer, got {size!r}; "
                     "set config.data.image_size to e.g. 16 or 32 (None means 32)")
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  import sklearn.model_selection  # pylint: disable=g-import-not-at-top

  digits = sklearn.datasets.load_digits()
  images = (digits.images.astype(np.float32) / 16.0)[..., None]   # 0..16 -> [0, 1]
  labels = digits.target.astype(np.int32)
  images = resize_bilinear(images, int(size))
  images = np.clip(np.repeat(images, 3, axis=-1), 0.0, 1.0)   # float round-off only
  idx = np.arange(len(labels))
  train_idx, test_idx = sklearn.model_selection.train_test_split(
      idx, test_size=DEMO_TEST_FRACTION, stratify=labels,
      random_state=DEMO_SPLIT_SEED)
  out = {}
  for split, sel in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
    out[split] = (np.ascontiguousarray(images[sel]), labels[sel])
  return out
