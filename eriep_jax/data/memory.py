"""The in-memory input pipeline: demo and folder sources as host arrays, without TensorFlow.

`config.data.pipeline='memory'` (or 'auto' on a machine without TensorFlow) reads a
data set that fits in host memory once into arrays and cuts batches from them
with numpy. It is the path for machines without TensorFlow (the project's GPU
machine) and for the demo set, whose images are born as arrays.

- **demo**: `demo.load_demo()` (float32 in [0, 1]).
- **folder**: every image of a split decoded once with Pillow (RGB, uint8), in
  the folder listing's order (class by class, files sorted), then cached as
  ``<root>/.eriep_arrays/<split>.npz`` with a key of the listing (paths and
  sizes), so later processes load the arrays instead of decoding 60,000 files.
  A root that cannot be written is decoded every time (logged). Corrupt files
  stop the read with a ValueError naming the file, or are left out and logged
  with ``skip_corrupt=True``. Images must share one size.

Batches match the tf.data pipeline's contract (`pipeline.py`): the same
shapes, dtypes, float conversion (uint8 / 255), per-process sharding, padded
and masked evaluation with 'index', and resuming at any step. Example order
is the indexed tf.data path's own (a permutation drawn from (seed, epoch)), so
with ``train_augment='none'`` a demo run's training batches equal the tf.data
path's. ``train_augment='crop_flip'`` (pad 4, random 32x32 crop, horizontal
flip) draws its offsets per global batch from numpy ``default_rng([seed,
epoch, step])``, not TensorFlow's stateless streams: the same distribution,
other draws. 'imagenet' cropping, ``image_size`` resizing and centre-cropped
evaluation are tf.data only, and asking for them here raises a ValueError.
"""

import hashlib
import logging
import math
import os
import pathlib
from typing import Iterator, NamedTuple

import numpy as np

from eriep_jax.data import demo as demo_lib
from eriep_jax.data import folder as folder_lib

CACHE_DIR = ".eriep_arrays"
CROP_PADDING = 4

_log = logging.getLogger(__name__)


class ArraySplit(NamedTuple):
  """One split in host memory: images (N, H, W, C) uint8 or float32 [0, 1], labels (N,) int32."""
  images: np.ndarray
  labels: np.ndarray

  @property
  def num_examples(self) -> int:
    return len(self.labels)


class ArraySource:
  """A demo or folder source whose splits are host arrays (read on first use)."""

  def __init__(self, name: str, class_names: tuple, raw_shape: tuple, splits: dict):
    self.name = name
    self.class_names = tuple(class_names)
    self.raw_shape = tuple(raw_shape)
    self.channels = raw_shape[-1]
    self._splits = splits   # name -> ArraySplit or a callable that reads it
    self._sizes = {}

  def split(self, split: str) -> ArraySplit:
    if split not in self._splits:
      raise ValueError(f"split {split!r} does not exist in {self.name!r}; use one "
                       f"of {sorted(self._splits)}")
    if callable(self._splits[split]):
      self._splits[split] = self._splits[split]()
    return self._splits[split]

  def num_examples(self, split: str) -> int:
    if split not in self._sizes:
      self._sizes[split] = self.split(split).num_examples
    return self._sizes[split]


def _decode_pillow(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"), np.uint8)


def _listing_key(paths: np.ndarray) -> str:
  digest = hashlib.sha256()
  for p in paths:
    digest.update(f"{p}\0{os.path.getsize(p)}\n".encode())
  return digest.hexdigest()


def _decode_split(paths: np.ndarray, labels: np.ndarray, skip_corrupt: bool, where: str):
  images, keep, skipped = [], [], []
  for i, p in enumerate(paths):
    try:
      images.append(_decode_pillow(p))
      keep.append(i)
    except (OSError, ValueError, SyntaxError) as e:   # Pillow's errors for unreadable files
      if not skip_corrupt:
        raise ValueError(f"cannot decode image file {str(p)!r} ({type(e).__name__}: {e}); remove "
                         "or replace it, or set config.data.skip_corrupt=True to skip corrupt "
                         "files") from e
      skipped.append(str(p))
  if skipped:
    _log.warning("skipped %d corrupt image file(s) in %s: %s%s", len(skipped), where,
                 ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")
  if not images:
    raise ValueError(f"no readable image in {where}; check the folder or the archive")
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise ValueError(f"images in {where} differ in size ({sorted(shapes)[:3]} ...); the "
                     "memory pipeline needs one size: resize the files, or use "
                     "config.data.pipeline='tfdata' with config.data.image_size")
  return np.stack(images), labels[np.asarray(keep, np.int64)]


def folder_arrays(root: pathlib.Path, split: str, *, skip_corrupt: bool = False) -> ArraySplit:
  """Decodes ``<root>/<split>/<class>/<image>`` into arrays once, cached under ``root``.

  Args:
    root: a prepared folder root (`folder.prepare_root`).
    split: the split folder.
    skip_corrupt: leave out (and log) files that fail to decode.

  Returns:
    The ArraySplit, uint8 images in listing order.

  Raises:
    ValueError: a corrupt file (naming it), images of different sizes, or a bad layout.
  """
  listing = folder_lib.list_split(str(root), split)
  key = _listing_key(listing.paths) + f"/skip={int(skip_corrupt)}"
  cache = root / CACHE_DIR / f"{split}.npz"
  if cache.exists():
    try:
      with np.load(cache, allow_pickle=False) as f:
        if str(f["key"]) == key:
          return ArraySplit(f["images"], f["labels"])
      _log.info("%s is stale (the folder changed); decoding again", cache)
    except (OSError, ValueError, KeyError) as e:
      _log.warning("cannot read the array cache %s (%s); decoding again", cache, e)
  _log.info("decoding %d images of %s/%s into memory (once; cached in %s)",
            len(listing.paths), root, split, cache.parent)
  images, labels = _decode_split(listing.paths, listing.labels, skip_corrupt, f"{root}/{split}")
  try:
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=images, labels=labels, key=np.asarray(key))
    os.replace(tmp, cache)   # atomic: concurrent processes never read half a file
  except OSError as e:
    _log.warning("cannot write the array cache %s (%s); the next run decodes again", cache, e)
  return ArraySplit(images, labels)


def array_source(source: str, root: str | None, archive: str | None,
                 skip_corrupt: bool, demo_size: int = demo_lib.DEMO_SIZE) -> ArraySource:
  """The ArraySource of a demo or folder ``config.data`` (splits read on first use)."""
  if source == "demo":
    data = demo_lib.load_demo(demo_size)
    return ArraySource("demo", demo_lib.CLASS_NAMES, data["train"][0].shape[1:],
                       {s: ArraySplit(*data[s]) for s in data})
  if source != "folder":
    raise ValueError(f"the memory pipeline reads data.source 'demo' or 'folder', not "
                     f"{source!r}; use config.data.pipeline='tfdata'")
  if not root:
    raise ValueError("data.source='folder' needs config.data.root (the folder, or where to "
                     "extract config.data.archive)")
  path = folder_lib.prepare_root(root, archive)
  splits = sorted(p.name for p in path.iterdir()
                  if p.is_dir() and not p.name.startswith("."))
  if "train" not in splits:
    raise ValueError(f"image folder {str(path)!r} has no train/ folder (found "
                     f"{splits}); use the layout <root>/{{train,test}}/<class>/<image>")
  train = folder_lib.list_split(str(path), "train")
  raw_shape = None
  for p in train.paths[:16]:   # the first readable image gives the size
    try:
      raw_shape = _decode_pillow(p).shape
      break
    except (OSError, ValueError, SyntaxError):
      continue
  if raw_shape is None:
    raise ValueError(f"none of the first 16 files of {str(path)!r}/train decodes (first: "
                     f"{str(train.paths[0])!r}); check the folder or the archive")
  return ArraySource(path.name, train.class_names, raw_shape,
                     {s: (lambda s=s: folder_arrays(path, s, skip_corrupt=skip_corrupt))
                      for s in splits})


# ----------------------------------------------------------------------------
# Batches (host numpy; pipeline.py shards them and puts them on the devices).
# ----------------------------------------------------------------------------


def check_options(data_config, *, augment: str, image_size, crop: str, raw_shape: tuple) -> None:
  """Refuses what only the tf.data pipeline does, in one sentence naming the fix."""
  fix = "or use config.data.pipeline='tfdata' (needs TensorFlow)"
  if augment not in ("none", "crop_flip"):
    raise ValueError(f"the memory pipeline has no train_augment {augment!r}; use 'none' or "
                     f"'crop_flip', {fix}")
  if image_size is not None and tuple(raw_shape[:2]) != (image_size, image_size):
    raise ValueError(f"the memory pipeline does not resize: images are {tuple(raw_shape[:2])}, "
                     f"config.data.image_size is {image_size}; set image_size=None, {fix}")
  if crop != "none":
    raise ValueError(f"the memory pipeline has no eval_crop {crop!r}; set "
                     f"config.data.eval_crop='none', {fix}")


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 / 255 (the tf.data path's conversion); float32 stays."""
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255.0)
  return np.asarray(images, np.float32)


def crop_flip(images: np.ndarray, rng: np.random.Generator,
              padding: int = CROP_PADDING) -> np.ndarray:
  """Pads by ``padding`` (zeros), crops back to (H, W) at a random offset, flips half."""
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  dy = rng.integers(0, 2 * padding + 1, n)
  dx = rng.integers(0, 2 * padding + 1, n)
  flip = rng.random(n) < 0.5
  rows = dy[:, None] + np.arange(h)[None, :]
  cols = dx[:, None] + np.arange(w)[None, :]
  cols = np.where(flip[:, None], cols[:, ::-1], cols)
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def train_batches(split: ArraySplit, base_idx: np.ndarray, *, seed: int, first_epoch: int,
                  first_skip: int, spe: int, global_bs: int, augment: str,
                  process_index: int, process_count: int) -> Iterator[dict]:
  """Infinite host batches of this process, from step first_epoch * spe + first_skip on."""
  local = global_bs // process_count
  epoch = first_epoch
  while True:
    order = base_idx[np.random.default_rng([seed, epoch]).permutation(len(base_idx))]
    order = order[:spe * global_bs].reshape(spe, process_count, local)
    for step in range(first_skip if epoch == first_epoch else 0, spe):
      idx = order[step, process_index]
      images = split.images[idx]
      if augment == "crop_flip":   # draws for the global batch: independent of process count
        rng = np.random.default_rng([seed, epoch, step])
        start = process_index * local
        full = np.zeros((global_bs,) + images.shape[1:], images.dtype)
        full[start:start + local] = images
        images = crop_flip(full, rng)[start:start + local]
      yield {"image": to_float(images), "label": split.labels[idx].astype(np.int32)}
    epoch += 1


def eval_batches(split: ArraySplit, *, global_bs: int, process_index: int,
                 process_count: int) -> Iterator[dict]:
  """One padded, masked pass of this process's share (every process_count-th example)."""
  local = global_bs // process_count
  total = split.num_examples
  idx = np.arange(process_index, total, process_count)
  num_batches = math.ceil(math.ceil(total / process_count) / local)
  shape = split.images.shape[1:]
  for b in range(num_batches):
    part = idx[b * local:(b + 1) * local]
    pad = local - len(part)
    image = to_float(split.images[part])
    yield {"image": np.concatenate([image, np.zeros((pad,) + shape, np.float32)]),
           "label": np.concatenate([split.labels[part], np.zeros(pad, np.int32)]).astype(np.int32),
           "mask": np.concatenate([np.ones(len(part), np.float32), np.zeros(pad, np.float32)]),
           "index": np.concatenate([part, np.full(pad, total)]).astype(np.int32)}
