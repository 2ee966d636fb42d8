"""tf.data input pipelines for `jax.pmap`: training (infinite) and evaluation (one pass).

Batches are dicts of arrays with leading axes (local_devices, per_device_batch),
already placed on the local devices (flax.jax_utils.prefetch_to_device):

    train: {'image': float32 (D, B/D, H, W, C) in [0, 1], 'label': int32 (D, B/D)}
    eval:  the same plus 'mask': float32 (D, B/D), 0 on padding.

Sharding: the global batch `config.batch_size` is split over processes
(`jax.process_index()` / `jax.process_count()`), and each process's share over
its local devices. A batch size that the device count does not divide raises a
ValueError before any data is read.

Determinism and resuming: epoch e of a run with seed s visits the examples in
the order of a permutation drawn from (s, e) (indexed sources: numpy
`default_rng([s, e])` over example indices; TFDS: a tf.data shuffle seeded
with (s, e) over the record stream), and example j of the epoch is augmented
with the stateless seed (s, e, j). An epoch has `steps_per_epoch` full batches
(the remainder is dropped). `train_iterator(start_step=k)` starts in epoch
k // steps_per_epoch after skipping its first k % steps_per_epoch batches, so
it yields exactly the batches an uninterrupted run yields from step k on. For
indexed sources the skip costs nothing; for TFDS it reads (but does not
decode) the skipped records.

Subsets (`num_examples`, the stage-1 search's 4,000 images): the first N
examples after a shuffle with the fixed seed SUBSET_SEED, independent of
config.seed, so every run searches on the same images. For TFDS the shuffle
buffer is min(N_train, config.data.shuffle_buffer).

Evaluation covers the split exactly once: process p reads every
process_count-th example (indexed) or its `tfds.even_splits` part; every
process yields the same number of batches, and the last ones are padded with
zero images whose mask is 0.

Two bodies keep this contract (`config.data.pipeline`, see `sources.resolve_pipeline`):
tf.data (`tfdata.py`, the default wherever TensorFlow is installed) and host
arrays (`memory.py`, demo and folder sources, no TensorFlow). This module holds
the checks and sizes that both share and imports neither TensorFlow nor TFDS.
"""

from typing import Iterator

import flax.jax_utils
import jax
import numpy as np

from eriep_jax.data import memory
from eriep_jax.data import sources
from eriep_jax.data.sources import DatasetInfo
from eriep_jax.data.sources import SUBSET_SEED

DEVICE_PREFETCH = 2

__all__ = ["DatasetInfo", "get_dataset_info", "train_iterator", "eval_iterator",
           "steps_per_epoch", "eval_crop", "heldout_arrays", "SUBSET_SEED"]


# ----------------------------------------------------------------------------
# Config checks and derived sizes.
# ----------------------------------------------------------------------------


def _check_batch_size(batch_size: int, what: str = "batch size") -> int:
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"{what} must be a positive integer; got {batch_size!r}")
  devices = jax.device_count()
  if batch_size % devices:
    raise ValueError(f"{what} {batch_size} is not divisible by {devices} devices; "
                     f"use a multiple of {devices}")
  return int(batch_size)


def _train_augment(data_config) -> str:
  augment = data_config.train_augment
  if augment not in sources.TRAIN_AUGMENTS:
    raise ValueError(f"unknown config.data.train_augment {augment!r}; use one of "
                     f"{', '.join(sources.TRAIN_AUGMENTS)}")
  return augment


def eval_crop(data_config) -> str:
  """'center' (resize + centre crop) or 'none'; 'auto' picks by augment/name."""
  crop = data_config.get("eval_crop", "auto")
  if crop not in sources.EVAL_CROPS:
    raise ValueError(f"unknown config.data.eval_crop {crop!r}; use one of "
                     f"{', '.join(sources.EVAL_CROPS)}")
  if crop == "auto":
    imagenet = (data_config.train_augment == "imagenet"
                or (data_config.source == "tfds" and data_config.name == "imagenet2012"))
    crop = "center" if imagenet else "none"
  return crop


def _image_size(data_config) -> int | None:
  size = data_config.get("image_size")
  if size is not None and (not isinstance(size, (int, np.integer)) or size <= 0):
    raise ValueError(f"config.data.image_size must be a positive integer or None; "
                     f"got {size!r}")
  return size


def _output_shape(data_config, raw_shape: tuple, *, train: bool) -> tuple:
  size = _image_size(data_config)
  channels = raw_shape[-1]
  crop_like = (_train_augment(data_config) == "imagenet" if train
               else eval_crop(data_config) == "center")
  if crop_like:
    size = size or sources.IMAGENET_SIZE
  if size:
    return (size, size, channels)
  if None in raw_shape:
    raise ValueError(f"images of {data_config.name!r} vary in size {raw_shape}; set "
                     "config.data.image_size (e.g. 224) or train_augment='imagenet'")
  return tuple(raw_shape)


def _eval_split_name(source, split: str) -> str:
  if isinstance(source, sources.TfdsSource):
    return source.resolve_split(split)
  return split


def _num_train(config, source, num_examples: int | None) -> int:
  total = source.num_examples("train")
  n = num_examples if num_examples is not None else config.data.get("num_train_examples")
  if n is None:
    return total
  if not isinstance(n, (int, np.integer)) or not 0 < n <= total:
    raise ValueError(f"num_examples {n!r} is out of range; use 1..{total} (the "
                     "training split's size) or None for all")
  return int(n)


def get_dataset_info(config) -> DatasetInfo:
  """Validates `config.data` and describes the data set.

  Args:
    config: the experiment ConfigDict (fields `config.data.*`).

  Returns:
    The DatasetInfo; `image_shape` is the shape after training preprocessing.

  Raises:
    ValueError: for an unknown source, data set, augmentation or split.
    FileNotFoundError: for a TFDS data set that is not prepared.
  """
  data = config.data
  _train_augment(data)
  eval_crop(data)
  source = sources.get_source(data)
  shape = _output_shape(data, source.raw_shape, train=True)
  num_test = source.num_examples(_eval_split_name(source, "test"))
  return DatasetInfo(name=source.name, num_classes=len(source.class_names),
                     num_train=_num_train(config, source, None), num_test=num_test,
                     image_shape=shape, class_names=source.class_names)


def steps_per_epoch(config, *, num_examples: int | None = None,
                    batch_size: int | None = None) -> int:
  """Full global batches per epoch: num_train // batch_size (remainder dropped).

  Args:
    config: the experiment config.
    num_examples: training subset size (default `config.data.num_train_examples`).
    batch_size: global batch size (default `config.batch_size`).

  Returns:
    The number of steps in one epoch.
  """
  batch_size = _check_batch_size(batch_size or config.batch_size)
  source = sources.get_source(config.data)
  n = _num_train(config, source, num_examples)
  if n < batch_size:
    raise ValueError(f"batch size {batch_size} is larger than the {n} training "
                     "examples; use a smaller batch size")
  return n // batch_size


# ----------------------------------------------------------------------------
# Host-side batches -> devices.
# ----------------------------------------------------------------------------


def _shard(batch: dict) -> dict:
  d = jax.local_device_count()
  return {k: v.reshape((d, v.shape[0] // d) + v.shape[1:]) for k, v in batch.items()}


def _to_devices(batches: Iterator[dict]) -> Iterator[dict]:
  return flax.jax_utils.prefetch_to_device(map(_shard, batches), DEVICE_PREFETCH)



# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------


def _subset_indices(total: int, n: int) -> np.ndarray:
  if n == total:
    return np.arange(total)
  return np.random.default_rng(SUBSET_SEED).permutation(total)[:n]


def train_iterator(config, *, start_step: int = 0, seed: int | None = None,
                   num_examples: int | None = None,
                   batch_size: int | None = None) -> Iterator[dict]:
  """Infinite training batches, sharded for `jax.pmap` and prefetched to devices.

  Args:
    config: the experiment config (`config.data`, `config.batch_size`,
      `config.seed`).
    start_step: the first global step to yield (resumed runs).
    seed: the data-order and augmentation seed (default `config.seed`).
    num_examples: use only the first N training examples after a fixed-seed
      shuffle (default `config.data.num_train_examples`; None = all).
    batch_size: the global batch size over all devices and processes
      (default `config.batch_size`).

  Returns:
    An iterator of {'image': (D, B/D, H, W, C) float32, 'label': (D, B/D)
    int32}, D = jax.local_device_count().

  Raises:
    ValueError: for a bad batch size, start_step, num_examples or config.data.
  """
  global_bs = _check_batch_size(batch_size or config.batch_size)
  if not isinstance(start_step, (int, np.integer)) or start_step < 0:
    raise ValueError(f"start_step must be a non-negative integer; got {start_step!r}")
  seed = config.seed if seed is None else seed
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
  data = config.data
  augment = _train_augment(data)
  image_size = _image_size(data)
  source = sources.get_source(data)
  shape = _output_shape(data, source.raw_shape, train=True)
  n = _num_train(config, source, num_examples)
  spe = steps_per_epoch(config, num_examples=n, batch_size=global_bs)
  first_epoch, first_skip = divmod(int(start_step), spe)
  common = dict(seed=int(seed), spe=spe, global_bs=global_bs, augment=augment)

  if isinstance(source, memory.ArraySource):
    memory.check_options(data, augment=augment, image_size=image_size, crop=eval_crop(data),
                         raw_shape=source.raw_shape)
    split = source.split("train")
    batches = memory.train_batches(
        split, _subset_indices(split.num_examples, n), first_epoch=first_epoch,
        first_skip=first_skip, process_index=jax.process_index(),
        process_count=jax.process_count(), **common)
  else:
    from eriep_jax.data import tfdata  # pylint: disable=g-import-not-at-top
    batches = tfdata.train_epochs(config, source, n, _subset_indices, first_epoch=first_epoch,
                                  first_skip=first_skip, image_size=image_size, shape=shape,
                                  **common)
  return _to_devices(batches)


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def eval_iterator(config, split: str = "test", *,
                  batch_size: int | None = None) -> Iterator[dict]:
  """One pass over `split`, padded and masked, sharded and prefetched to devices.

  Every example is yielded exactly once (mask 1); padding has mask 0 and zero
  images. For TFDS sets without a 'test' split, 'test' reads 'validation'.

  Args:
    config: the experiment config (`config.data`, `config.eval_batch_size`).
    split: the split to read ('test', 'train', ...).
    batch_size: the global batch size (default `config.eval_batch_size`).

  Returns:
    A finite iterator of {'image': (D, B/D, H, W, C) float32, 'label': (D, B/D)
    int32, 'mask': (D, B/D) float32, 'index': (D, B/D) int32}. 'index' is the
    example's position in the split (the split size for padding): evaluation
    keys its random perturbations by it, so they do not depend on the batch
    size, the device count or the number of processes.

  Raises:
    ValueError: for a bad batch size, split or config.data.
  """
  global_bs = _check_batch_size(batch_size or config.eval_batch_size,
                                "eval batch size")
  data = config.data
  crop = eval_crop(data)
  image_size = _image_size(data)
  source = sources.get_source(data)
  shape = _output_shape(data, source.raw_shape, train=False)
  split = _eval_split_name(source, split)
  if isinstance(source, memory.ArraySource):
    memory.check_options(data, augment=_train_augment(data), image_size=image_size, crop=crop,
                         raw_shape=source.raw_shape)
    batches = memory.eval_batches(source.split(split), global_bs=global_bs,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())
  else:
    from eriep_jax.data import tfdata  # pylint: disable=g-import-not-at-top
    batches = tfdata.eval_batches(source, split, global_bs=global_bs, crop=crop,
                                  image_size=image_size, shape=shape)
  return _to_devices(batches)


# ----------------------------------------------------------------------------
# Held-out examples of a subset (the stage-1 search's classifier check).
# ----------------------------------------------------------------------------


def heldout_arrays(config, *, num_examples: int, count: int,
                   split: str = "train") -> dict[str, np.ndarray]:
  """Examples outside a training subset, on the host, for a quick accuracy check.

  ``split='train'``: the ``count`` training examples that follow the first
  ``num_examples`` of the fixed-seed shuffle that `train_iterator` draws its
  subsets from, so they are disjoint from a search on ``num_examples`` images
  and never touch the test split. ``split='test'``: the first ``count``
  examples of the test split. Images get the evaluation preprocessing.

  Args:
    config: the experiment config (``config.data``).
    num_examples: the size of the training subset to stay clear of.
    count: how many examples to return (fewer if the split runs out).
    split: 'train' or 'test'.

  Returns:
    ``{'image': float32 (n, H, W, C) in [0, 1], 'label': int32 (n,)}``.

  Raises:
    ValueError: for an unknown split, or no example left outside the subset.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split {split!r} is unknown; use 'train' (after the subset) or 'test'.")
  data = config.data
  crop = eval_crop(data)
  image_size = _image_size(data)
  source = sources.get_source(data)
  shape = _output_shape(data, source.raw_shape, train=False)
  total = source.num_examples("train" if split == "train" else _eval_split_name(source, split))
  start = int(num_examples) if split == "train" else 0
  count = min(int(count), total - start)
  if count < 1:
    raise ValueError(f"no {split} example is left after the first {start} of {total}; use a "
                     "smaller search.num_examples or search.heldout_split='test'.")

  if isinstance(source, memory.ArraySource):
    memory.check_options(data, augment=_train_augment(data), image_size=image_size, crop=crop,
                         raw_shape=source.raw_shape)
    sp = source.split(split)
    idx = (np.random.default_rng(SUBSET_SEED).permutation(total)[start:start + count]
           if split == "train" else np.arange(count))
    return {"image": memory.to_float(sp.images[idx]), "label": sp.labels[idx].astype(np.int32)}
  from eriep_jax.data import tfdata  # pylint: disable=g-import-not-at-top
  batches = tfdata.heldout(config, source, split, total=total, start=start, count=count,
                           crop=crop, image_size=image_size, shape=shape)
  return {k: np.concatenate([b[k] for b in batches]) for k in ("image", "label")}
