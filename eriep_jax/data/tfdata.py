"""The tf.data bodies of the input pipelines (`pipeline.py` holds the contract and the checks).

Imported only when `config.data.pipeline` resolves to 'tfdata', so that a
machine without TensorFlow can still train from demo and folder data through
`memory.py`. The order, seeds and sharding are described in `pipeline.py`.
"""

import itertools
import math
from typing import Iterator

import jax
import numpy as np

from eriep_jax.data import folder as folder_lib
from eriep_jax.data import preprocess
from eriep_jax.data import sources
from eriep_jax.data.sources import SUBSET_SEED

tf = sources.tf_module()


def _epoch_seed(seed: int, epoch: int) -> tf.Tensor:
  return tf.constant([seed, epoch], tf.int64)


def _example_seed(base: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(base, tf.cast(position, tf.int64))


_DECODE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                  tf.errors.DataLossError)


def _run(ds: tf.data.Dataset, source, paths, errors=_DECODE_ERRORS) -> Iterator[dict]:
  """Iterates a tf.data pipeline, turning decode errors into named-file errors."""
  try:
    yield from ds.as_numpy_iterator()
  except errors as e:
    if paths is not None:
      folder_lib.raise_corrupt(paths, e, channels=source.channels)
    raise



def _indexed_train_epoch(source, split, base_idx, *, seed, epoch, skip, spe,
                         global_bs, augment, image_size, shape):
  pidx, pcount = jax.process_index(), jax.process_count()
  local = global_bs // pcount
  order = base_idx[np.random.default_rng([seed, epoch]).permutation(len(base_idx))]
  order = order[:spe * global_bs].reshape(spe, pcount, local)[:, pidx]
  position = (np.arange(spe)[:, None] * global_bs + pidx * local
              + np.arange(local)[None, :])
  order, position = order[skip:].reshape(-1), position[skip:].reshape(-1)
  labels = tf.constant(split.labels)
  base = _epoch_seed(seed, epoch)

  def load(i, pos):
    seed = _example_seed(base, pos)
    if augment == "imagenet" and split.read is not None:   # decode the window only
      image = preprocess.decode_random_resized_crop(
          split.read(i), seed, channels=source.channels, size=shape[0])
    else:
      image = preprocess.train_preprocess(split.load(i), seed, augment=augment,
                                          image_size=image_size)
    return {"image": tf.ensure_shape(image, shape), "label": tf.gather(labels, i)}

  ds = tf.data.Dataset.from_tensor_slices((order, position))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _tfds_train_epoch(source, split_ds, n_local, *, seed, epoch, skip, spe,
                      global_bs, augment, image_size, shape, buffer):
  pidx, pcount = jax.process_index(), jax.process_count()
  local = global_bs // pcount
  base = _example_seed(_epoch_seed(seed, epoch), pidx)
  ds = split_ds.shuffle(min(buffer, n_local), seed=(seed * 1_000_003 + epoch) % 2**31,
                        reshuffle_each_iteration=False)
  ds = ds.take(spe * local).enumerate().skip(skip * local)

  def load(pos, example):
    encoded, label = example
    seed = _example_seed(base, pos)
    if augment == "imagenet":   # decode the window only
      image = preprocess.decode_random_resized_crop(
          encoded, seed, channels=source.channels, size=shape[0])
    else:
      image = preprocess.train_preprocess(source.decode(encoded), seed,
                                          augment=augment, image_size=image_size)
    return {"image": tf.ensure_shape(image, shape), "label": label}

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)



def train_epochs(config, source, n: int, subset_indices, *, first_epoch: int, first_skip: int,
                 **common) -> Iterator[dict]:
  """Host training batches from step first_epoch * spe + first_skip on, epoch after epoch."""
  data = config.data
  if isinstance(source, sources.IndexedSource):
    split = source.split("train")
    base_idx = subset_indices(split.num_examples, n)
    for epoch in itertools.count(first_epoch):
      skip = first_skip if epoch == first_epoch else 0
      ds = _indexed_train_epoch(source, split, base_idx, epoch=epoch, skip=skip, **common)
      yield from _run(ds, source, split.paths)
    return
  pidx, pcount = jax.process_index(), jax.process_count()
  total = source.num_examples("train")
  if n < total:
    full = source.as_dataset("train")
    full = full.shuffle(min(total, data.shuffle_buffer), seed=SUBSET_SEED,
                        reshuffle_each_iteration=False).take(n)
    split_ds, n_local = full.shard(pcount, pidx), len(range(pidx, n, pcount))
  else:
    sub = source.process_split("train", pidx, pcount)
    split_ds, n_local = source.as_dataset(sub), source.num_examples(sub)
  for epoch in itertools.count(first_epoch):
    skip = first_skip if epoch == first_epoch else 0
    ds = _tfds_train_epoch(source, split_ds, n_local, epoch=epoch, skip=skip,
                           buffer=data.shuffle_buffer, **common)
    yield from _run(ds, source, None)


def eval_batches(source, split: str, *, global_bs: int, crop: str, image_size,
                 shape: tuple) -> Iterator[dict]:
  """One padded, masked pass over `split` (host batches of this process)."""
  pidx, pcount = jax.process_index(), jax.process_count()
  local = global_bs // pcount

  def prep(image, label, index):
    image = preprocess.eval_preprocess(image, crop=crop, image_size=image_size)
    return {"image": tf.ensure_shape(image, shape), "label": label,
            "mask": tf.constant(1.0, tf.float32), "index": tf.cast(index, tf.int32)}

  if isinstance(source, sources.IndexedSource):
    sp = source.split(split)
    total = sp.num_examples
    idx = np.arange(pidx, total, pcount)
    labels = tf.constant(sp.labels)
    ds = tf.data.Dataset.from_tensor_slices(idx).map(
        lambda i: prep(sp.load(i), tf.gather(labels, i), i),
        num_parallel_calls=tf.data.AUTOTUNE)
    n_local, paths = len(idx), sp.paths
  else:
    total = source.num_examples(split)
    sub = source.process_split(split, pidx, pcount)
    n_local = source.num_examples(sub)
    # even_splits are contiguous: this process's first example follows the
    # earlier processes' ones.
    start = sum(source.num_examples(source.process_split(split, q, pcount))
                for q in range(pidx))
    ds = source.as_dataset(sub).enumerate(start).map(
        lambda pos, example: prep(source.decode(example[0]), example[1], pos),
        num_parallel_calls=tf.data.AUTOTUNE)
    paths = None
  # Every process yields the same number of batches (pmap needs all hosts).
  num_batches = math.ceil(math.ceil(total / pcount) / local)
  pad = num_batches * local - n_local
  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros(shape, tf.float32), "label": tf.constant(0, tf.int32),
      "mask": tf.constant(0.0, tf.float32), "index": tf.constant(total, tf.int32)}).repeat(pad)
  ds = ds.concatenate(padding).batch(local, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return _run(ds, source, paths)


def heldout(config, source, split: str, *, total: int, start: int, count: int, crop: str,
            image_size, shape: tuple) -> list[dict]:
  """`pipeline.heldout_arrays`'s examples, as host batches."""
  def prep(image, label):
    return {"image": tf.ensure_shape(
        preprocess.eval_preprocess(image, crop=crop, image_size=image_size), shape),
            "label": tf.cast(label, tf.int32)}

  if isinstance(source, sources.IndexedSource):
    sp = source.split(split)
    idx = (np.random.default_rng(SUBSET_SEED).permutation(total)[start:start + count]
           if split == "train" else np.arange(count))
    labels = tf.constant(sp.labels)
    ds = tf.data.Dataset.from_tensor_slices(idx).map(
        lambda i: prep(sp.load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
    paths = sp.paths
  else:
    ds = source.as_dataset(source.resolve_split(split))
    if split == "train":   # the same stream `train_iterator` takes its subset from
      ds = ds.shuffle(min(total, config.data.shuffle_buffer), seed=SUBSET_SEED,
                      reshuffle_each_iteration=False)
    ds = ds.skip(start).take(count).map(lambda e, y: prep(source.decode(e), y),
                                        num_parallel_calls=tf.data.AUTOTUNE)
    paths = None
  return list(_run(ds.batch(256), source, paths))
