"""The built-in offline demo set: scikit-learn's 8x8 handwritten digits.

scikit-learn ships the UCI optical-recognition digits (1,797 images, 10
classes, pixel values 0..16) inside the package, so this set needs no download.
The images are scaled to [0, 1], resized bilinearly to 32x32 (the CIFAR input
size, so the CIFAR models run unchanged) and repeated to 3 channels. The split
is a fixed stratified 80/20 split (`train_test_split(test_size=0.2,
stratify=labels, random_state=0)`): 1,437 train and 360 test images, each split
kept in the original file order. Batches then go through the same
preprocessing, sharding and device path as every other source.

scikit-learn and TensorFlow are imported inside `load_demo`, so importing this module costs neither.
"""

import functools

import numpy as np

DEMO_SIZE = 32
DEMO_SPLIT_SEED = 0
DEMO_TEST_FRACTION = 0.2
CLASS_NAMES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)
def load_demo() -> dict:
  """Loads, resizes and splits the digits once per process.

  Returns:
    {'train': (images, labels), 'test': (images, labels)} with float32 images
    (N, 32, 32, 3) in [0, 1] and int32 labels (N,).
  """
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  import sklearn.model_selection  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  digits = sklearn.datasets.load_digits()
  images = (digits.images.astype(np.float32) / 16.0)[..., None]   # 0..16 -> [0, 1]
  labels = digits.target.astype(np.int32)
  images = tf.image.resize(images, (DEMO_SIZE, DEMO_SIZE), method="bilinear").numpy()
  images = np.clip(np.repeat(images, 3, axis=-1), 0.0, 1.0)   # float round-off only
  idx = np.arange(len(labels))
  train_idx, test_idx = sklearn.model_selection.train_test_split(
      idx, test_size=DEMO_TEST_FRACTION, stratify=labels,
      random_state=DEMO_SPLIT_SEED)
  out = {}
  for split, sel in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
    out[split] = (np.ascontiguousarray(images[sel]), labels[sel])
  return out
