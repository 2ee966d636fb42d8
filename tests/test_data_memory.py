"""Tests for the in-memory input pipeline (eriep_jax/data/memory.py): no TensorFlow needed.

The launch test runs the whole demo job with TensorFlow blocked from import
(tests/test_launch.py); here the pipeline's contract: the same batches as the
tf.data path where both read the same pixels, resuming at any step, every epoch
covering the split once, per-process sharding, the array cache and bad input.
"""

import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

from eriep_jax import data
from eriep_jax.data import demo as demo_lib
from eriep_jax.data import folder as folder_lib
from eriep_jax.data import memory
from eriep_jax.data import sources

import tiny


_config = tiny.data_config


def _host(batches, n):
  out = []
  for i, b in enumerate(batches):
    if i >= n:
      break
    out.append({k: np.asarray(v).reshape((-1,) + np.asarray(v).shape[2:]) for k, v in b.items()})
  return out


def _index_folder(root: pathlib.Path, per_class: int = 16, classes: int = 4) -> int:
  """PNG folder whose image k has pixel (0, 0) = (k % 256, k // 256, class): lossless ids."""
  k = 0
  for split, count in (("train", per_class), ("test", 3)):
    for c in range(classes):
      d = root / split / f"class{c}"
      d.mkdir(parents=True)
      for j in range(count):
        image = np.full((8, 8, 3), 100, np.uint8)
        image[0, 0] = (k % 256, k // 256, c)
        Image.fromarray(image).save(d / f"{j:03d}.png")
        k += 1
  return classes * per_class


def _ids(images: np.ndarray) -> np.ndarray:
  """The ids written by _index_folder, from float images in [0, 1]."""
  px = np.rint(images[:, 0, 0] * 255).astype(int)
  return px[:, 0] + 256 * px[:, 1]


def test_resize_matches_tensorflow_bit_for_bit():
  tf = pytest.importorskip("tensorflow")
  x = np.random.default_rng(0).random((3, 8, 8, 2)).astype(np.float32)
  want = tf.image.resize(x, (32, 32), method="bilinear").numpy()
  np.testing.assert_array_equal(demo_lib.resize_bilinear(x, 32), want)
  x = np.random.default_rng(1).random((2, 7, 9, 3)).astype(np.float32)
  want = tf.image.resize(x, (5, 5), method="bilinear").numpy()   # shrinking, odd sizes
  np.testing.assert_array_equal(demo_lib.resize_bilinear(x, 5), want)


@pytest.mark.parametrize("size", [None, 16])   # the default 32x32 and the README demo's 16x16
def test_demo_batches_equal_the_tfdata_path(size):
  pytest.importorskip("tensorflow")
  mem, tfd = (_config(source="demo", pipeline=p, image_size=size) for p in ("memory", "tfdata"))
  for c in (mem, tfd):
    c.batch_size, c.eval_batch_size, c.seed = 32, 100, 3
  assert isinstance(sources.get_source(mem.data), memory.ArraySource)
  assert isinstance(sources.get_source(tfd.data), sources.IndexedSource)
  assert data.get_dataset_info(mem) == data.get_dataset_info(tfd)
  # Training from step 40 (epoch 0 has 1437 // 32 = 44 steps): across an epoch boundary.
  a = _host(data.train_iterator(mem, start_step=40), 6)
  b = _host(data.train_iterator(tfd, start_step=40), 6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  a = _host(data.eval_iterator(mem), 10)
  b = _host(data.eval_iterator(tfd), 10)
  assert len(a) == len(b) == 4   # 360 images in batches of 100, the last one padded
  for x, y in zip(a, b):
    for k in ("image", "label", "mask", "index"):
      np.testing.assert_array_equal(x[k], y[k])
  a = data.heldout_arrays(mem, num_examples=1000, count=300)
  b = data.heldout_arrays(tfd, num_examples=1000, count=300)
  assert a["image"].shape == (300, size or 32, size or 32, 3)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])


@pytest.mark.parametrize("augment", ["none", "crop_flip"])
def test_resume_at_step_k_yields_the_straight_runs_batches(augment):
  c = _config(source="demo", pipeline="memory", train_augment=augment)
  c.batch_size = 64   # 22 steps an epoch
  straight = _host(data.train_iterator(c), 30)
  for k in (1, 21, 22, 25):
    resumed = _host(data.train_iterator(c, start_step=k), 30 - k)
    for x, y in zip(resumed, straight[k:]):
      np.testing.assert_array_equal(x["image"], y["image"])
      np.testing.assert_array_equal(x["label"], y["label"])
  # The augmentation draws differ between steps but keep the pixel values' range.
  if augment == "crop_flip":
    plain = _host(data.train_iterator(_config(source="demo", pipeline="memory")), 1)[0]
    assert not np.array_equal(straight[0]["image"], plain["image"])
    assert straight[0]["image"].min() >= 0 and straight[0]["image"].max() <= 1


def test_each_epoch_covers_the_folder_split_once_and_processes_share_it(tmp_path):
  n = _index_folder(tmp_path / "f")
  c = _config(source="folder", root=str(tmp_path / "f"), pipeline="memory")
  c.batch_size, c.eval_batch_size = 8, 8
  spe = data.steps_per_epoch(c)
  assert spe == n // 8 == 8
  batches = _host(data.train_iterator(c), 3 * spe)
  epochs = [np.concatenate([_ids(b["image"]) for b in batches[e * spe:(e + 1) * spe]])
            for e in range(3)]
  for ids in epochs:
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])   # a new order each epoch
  # Labels follow the images: class = the pixel's third channel.
  b = batches[0]
  np.testing.assert_array_equal(np.rint(b["image"][:, 0, 0, 2] * 255), b["label"])
  # Two processes: their local batches, side by side, are the one-process global batch.
  split = sources.get_source(c.data).split("train")
  kw = dict(seed=0, first_epoch=0, first_skip=0, spe=spe, global_bs=8, augment="crop_flip")
  one = next(memory.train_batches(split, np.arange(n), process_index=0, process_count=1, **kw))
  parts = [next(memory.train_batches(split, np.arange(n), process_index=p, process_count=2, **kw))
           for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), one["image"])
  # Evaluation: every test example exactly once over both processes, padding masked.
  test = sources.get_source(c.data).split("test")
  seen = []
  for p in (0, 1):
    for b in memory.eval_batches(test, global_bs=4, process_index=p, process_count=2):
      assert b["image"].shape == (2, 8, 8, 3)
      seen += list(b["index"][b["mask"] > 0])
      assert np.all(b["index"][b["mask"] == 0] == test.num_examples)
  assert sorted(seen) == list(range(test.num_examples)) == list(range(12))


def test_folder_arrays_are_cached_and_refreshed(tmp_path, monkeypatch):
  root = tmp_path / "f"
  _index_folder(root, per_class=2, classes=2)
  first = memory.folder_arrays(root, "train")
  assert first.images.dtype == np.uint8 and first.images.shape == (4, 8, 8, 3)
  assert (root / memory.CACHE_DIR / "train.npz").is_file()
  calls = []
  real = memory._decode_pillow
  monkeypatch.setattr(memory, "_decode_pillow", lambda p: calls.append(p) or real(p))
  again = memory.folder_arrays(root, "train")
  assert calls == []   # read from the cache
  np.testing.assert_array_equal(again.images, first.images)
  # A new file changes the listing: the cache is stale and the split is decoded again
  # (by a later process: a process lists a folder once).
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "class0" / "999.png")
  folder_lib.list_split.cache_clear()
  fresh = memory.folder_arrays(root, "train")
  assert len(calls) == 5 and fresh.images.shape[0] == 5


def test_corrupt_and_odd_files_are_one_sentence(tmp_path, caplog):
  root = tmp_path / "f"
  _index_folder(root, per_class=2, classes=2)
  bad = root / "train" / "class1" / "000.png"
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match=r"cannot decode image file .*000\.png.*skip_corrupt=True"):
    memory.folder_arrays(root, "train")
  with caplog.at_level(logging.WARNING):
    kept = memory.folder_arrays(root, "train", skip_corrupt=True)
  assert kept.images.shape[0] == 3 and list(kept.labels) == [0, 0, 1]
  assert "skipped 1 corrupt image file" in caplog.text
  bad.unlink()
  Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(bad)
  with pytest.raises(ValueError, match=r"differ in size.*pipeline='tfdata'"):
    memory.folder_arrays(root, "train")


def test_bad_pipeline_settings_are_refused_before_reading(tmp_path):
  with pytest.raises(ValueError, match=r"unknown config.data.pipeline 'arrays'"):
    sources.resolve_pipeline(_config(source="demo", pipeline="arrays").data)
  with pytest.raises(ValueError, match=r"reads only .* sources, not data.source='tfds'"):
    sources.resolve_pipeline(_config(source="tfds", pipeline="memory").data)
  c = _config(source="demo", pipeline="memory", train_augment="imagenet")
  with pytest.raises(ValueError, match=r"no train_augment 'imagenet'.*pipeline='tfdata'"):
    data.train_iterator(c)
  _index_folder(tmp_path / "f", per_class=1, classes=2)
  c = _config(source="folder", root=str(tmp_path / "f"), pipeline="memory", image_size=64)
  with pytest.raises(ValueError, match=r"does not resize.*\(8, 8\).*image_size is 64"):
    data.eval_iterator(c)
  # The demo set is rendered at image_size, so the memory pipeline takes any size there.
  c = _config(source="demo", pipeline="memory", image_size=12)
  assert data.get_dataset_info(c).image_shape == (12, 12, 3)


def test_without_tensorflow_auto_is_memory_and_tfdata_is_refused(monkeypatch):
  monkeypatch.setitem(__import__("sys").modules, "tensorflow", None)
  assert not sources.tensorflow_available()
  assert sources.resolve_pipeline(_config(source="demo").data) == "memory"
  assert not data.uses_tensorflow(_config(source="folder", root="/x").data)
  with pytest.raises(ValueError, match=r"needs TensorFlow, which cannot be imported here"):
    sources.resolve_pipeline(_config(source="demo", pipeline="tfdata").data)
  with pytest.raises(ValueError, match=r"data.source='tfds' .*needs TensorFlow"):
    sources.resolve_pipeline(_config(source="tfds").data)
