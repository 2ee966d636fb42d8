"""Tests for eriep_jax.data: TFDS, image-folder and demo pipelines, preprocessing."""

import io
import logging
import pathlib
import tarfile

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from eriep_jax import data
from eriep_jax.data import demo as demo_lib
from eriep_jax.data import folder as folder_lib
from eriep_jax.data import preprocess

import tiny

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                 "horse", "ship", "truck")


_config = tiny.data_config


def _host(batches, n=None):
  """Device batches -> list of numpy dicts (n of them, or all)."""
  out = []
  for i, b in enumerate(batches):
    if n is not None and i >= n:
      break
    out.append({k: np.asarray(v) for k, v in b.items()})
  return out


def _flat(batch, key):
  v = batch[key]
  return v.reshape((-1,) + v.shape[2:])


# ----------------------------------------------------------------------------
# Demo set (scikit-learn digits).
# ----------------------------------------------------------------------------


def test_demo_set_split_values_and_info():
  import sklearn.datasets
  d = demo_lib.load_demo()
  (xtr, ytr), (xte, yte) = d["train"], d["test"]
  assert (len(ytr), len(yte)) == (1437, 360)
  assert xtr.shape == (1437, 32, 32, 3) and xtr.dtype == np.float32
  assert xtr.min() == 0.0 and xtr.max() == 1.0 and xte.min() >= 0 and xte.max() <= 1
  assert set(ytr) == set(yte) == set(range(10))
  # Stratified: every class has 20% (+-1 image) of its images in test.
  digits = sklearn.datasets.load_digits()
  per_class = np.bincount(digits.target, minlength=10)
  assert np.all(np.abs(np.bincount(yte, minlength=10) - 0.2 * per_class) <= 1)
  # Grey in 3 channels. Bilinear x4 upsampling (half-pixel centres, edges
  # clamped) samples at offsets -3/8, -1/8, 1/8, 3/8, so each 4x4 block's mean
  # is the digit / 16 filtered with [1/8, 3/4, 1/8] along both axes.
  np.testing.assert_array_equal(xtr[..., 0], xtr[..., 2])
  all_x = np.concatenate([xtr, xte])[..., 0]
  all_y = np.concatenate([ytr, yte])
  pooled = all_x.reshape(-1, 8, 4, 8, 4).mean((2, 4))
  order = np.concatenate([np.sort(i) for i in (_demo_split_indices())])
  np.testing.assert_array_equal(all_y, digits.target[order])
  ref = digits.images[order] / 16
  for axis in (1, 2):
    ref = ndi.correlate1d(ref, [0.125, 0.75, 0.125], axis=axis, mode="nearest")
  np.testing.assert_allclose(pooled, ref, atol=1e-6)
  info = data.get_dataset_info(_config(source="demo"))
  assert info == data.DatasetInfo("demo", 10, 1437, 360, (32, 32, 3),
                                  tuple("0123456789"))
  # config.data.image_size renders the digits at that size, straight from 8x8: x2 upsampling
  # samples at offsets -1/4, 1/4, so each 2x2 block's mean is the same [1/8, 3/4, 1/8] filter.
  info = data.get_dataset_info(_config(source="demo", image_size=16))
  assert info.image_shape == (16, 16, 3)
  small = demo_lib.load_demo(16)
  x16 = np.concatenate([small["train"][0], small["test"][0]])[..., 0]
  np.testing.assert_array_equal(np.concatenate([small["train"][1], small["test"][1]]), all_y)
  np.testing.assert_allclose(x16.reshape(-1, 8, 2, 8, 2).mean((2, 4)), ref, atol=1e-6)
  with pytest.raises(ValueError, match=r"image size must be a positive integer, got -4; set "
                     r"config.data.image_size"):
    demo_lib.load_demo(-4)


def _demo_split_indices():
  import sklearn.datasets
  import sklearn.model_selection
  y = sklearn.datasets.load_digits().target
  return sklearn.model_selection.train_test_split(
      np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)


def test_demo_train_iterator_shapes_determinism_and_resume():
  c = _config(source="demo", train_augment="crop_flip")
  c.batch_size = 64
  kw = dict(num_examples=200)   # 3 steps per epoch: 5 batches cross an epoch
  assert data.steps_per_epoch(c, num_examples=200) == 3
  run = _host(data.train_iterator(c, **kw), 5)
  b = run[0]
  assert b["image"].shape == (2, 32, 32, 32, 3) and b["image"].dtype == np.float32
  assert b["label"].shape == (2, 32) and b["label"].dtype == np.int32
  assert b["image"].min() >= 0 and b["image"].max() <= 1
  assert b["label"].min() >= 0 and b["label"].max() <= 9
  again = _host(data.train_iterator(c, **kw), 5)
  for x, y in zip(run, again):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  # Resuming at step 4 (epoch 1, second batch) sees the uninterrupted batch.
  resumed = _host(data.train_iterator(c, start_step=4, **kw), 1)[0]
  np.testing.assert_array_equal(resumed["image"], run[4]["image"])
  np.testing.assert_array_equal(resumed["label"], run[4]["label"])
  other = _host(data.train_iterator(c, seed=1, **kw), 1)[0]
  assert not np.array_equal(other["image"], run[0]["image"])


def test_demo_epoch_order_subset_and_errors():
  c = _config(source="demo")   # no augmentation: images identify examples
  c.batch_size = 64
  batches = _host(data.train_iterator(c, num_examples=200), 9)   # 3 epochs
  keys = [[x.tobytes() for x in _flat(b, "image")] for b in batches]
  epochs = [sum(keys[i:i + 3], []) for i in (0, 3, 6)]
  subset = {k for e in epochs for k in e}
  assert all(len(set(e)) == 192 for e in epochs)   # no repeats within an epoch
  assert len(subset) <= 200                        # drawn from the fixed subset
  assert epochs[0] != epochs[1]                    # reshuffled per epoch
  with pytest.raises(ValueError, match="batch size 63 is not divisible by 2 devices; "
                     "use a multiple of 2"):
    data.train_iterator(c, batch_size=63)
  with pytest.raises(ValueError, match="eval batch size 5 is not divisible"):
    data.eval_iterator(c, batch_size=5)
  with pytest.raises(ValueError, match="num_examples 5000"):
    data.train_iterator(c, num_examples=5000)
  with pytest.raises(ValueError, match="'nope'.*tfds, folder, demo"):
    data.get_dataset_info(_config(source="nope"))
  with pytest.raises(ValueError, match="'random'.*none, crop_flip, imagenet"):
    data.get_dataset_info(_config(source="demo", train_augment="random"))


def test_demo_process_sharding(monkeypatch):
  """Two simulated processes read disjoint shards that make up the global batch."""
  c = _config(source="demo", train_augment="crop_flip")
  c.batch_size = 64
  c.eval_batch_size = 100
  whole = _host(data.train_iterator(c, num_examples=200), 4)
  ev_whole = _host(data.eval_iterator(c))
  shards, ev_shards = [], []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  for p in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    shards.append(_host(data.train_iterator(c, num_examples=200), 4))
    ev_shards.append(_host(data.eval_iterator(c)))
  for step in range(4):
    # Each process yields its 32 of the global 64 (2 devices x 16), and
    # process 0's then process 1's examples are the global batch, augmentation
    # included (seeds follow the example's global position).
    assert shards[0][step]["image"].shape == (2, 16, 32, 32, 3)
    for key in ("image", "label"):
      joined = np.concatenate([_flat(shards[0][step], key), _flat(shards[1][step], key)])
      np.testing.assert_array_equal(joined, _flat(whole[step], key))
  # Evaluation: the same number of batches on both, every image exactly once.
  assert len(ev_shards[0]) == len(ev_shards[1]) == 4
  seen = [x.tobytes() for sh in ev_shards for b in sh
          for x, m in zip(_flat(b, "image"), _flat(b, "mask")) if m == 1]
  ref = [x.tobytes() for b in ev_whole for x, m in zip(_flat(b, "image"), _flat(b, "mask"))
         if m == 1]
  assert len(seen) == 360 and sorted(seen) == sorted(ref)
  # The split positions travel with the images: the same image has the same
  # index whichever process reads it.
  by_image = {x.tobytes(): i for b in ev_whole
              for x, i, m in zip(_flat(b, "image"), _flat(b, "index"), _flat(b, "mask")) if m}
  shard_index = {x.tobytes(): i for sh in ev_shards for b in sh
                 for x, i, m in zip(_flat(b, "image"), _flat(b, "index"), _flat(b, "mask")) if m}
  assert sorted(by_image.values()) == list(range(360))
  assert shard_index == by_image


def test_demo_eval_covers_split_once():
  c = _config(source="demo")
  c.eval_batch_size = 100
  batches = _host(data.eval_iterator(c, "test"))
  assert len(batches) == 4   # 360 -> 3 full batches and one with 40 padded
  mask = np.concatenate([_flat(b, "mask") for b in batches])
  images = np.concatenate([_flat(b, "image") for b in batches])
  labels = np.concatenate([_flat(b, "label") for b in batches])
  assert mask.sum() == 360 and mask.dtype == np.float32
  xte, yte = demo_lib.load_demo()["test"]
  np.testing.assert_array_equal(images[mask == 1], xte)
  np.testing.assert_array_equal(labels[mask == 1], yte)
  assert np.all(images[mask == 0] == 0)


# ----------------------------------------------------------------------------
# Image folder.
# ----------------------------------------------------------------------------

COLORS = {"ant": (220, 30, 30), "cat": (30, 220, 30), "dog": (30, 30, 220)}


def _jpeg(path, rgb, size=(12, 10)):
  Image.new("RGB", size, rgb).save(path, quality=95)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder") / "mini"
  for split, counts in (("train", (5, 4, 3)), ("test", (3, 2, 2))):
    k = 0
    for name, n in zip(sorted(COLORS), counts):
      d = root / split / name
      d.mkdir(parents=True)
      for i in range(n):
        # Test images carry a distinct brightness so each can be identified.
        rgb = COLORS[name] if split == "train" else (20 + 30 * k,) * 3
        _jpeg(d / f"{i:03d}.jpg", rgb)
        k += 1
  (root / "train" / "cat" / "notes.txt").write_text("not an image")
  corrupt = root / "train" / "dog" / "zz_broken.jpg"
  corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
  return root, corrupt


def test_folder_labels_values_and_corrupt_file(image_folder):
  root, corrupt = image_folder
  c = _config(source="folder", root=str(root))
  c.eval_batch_size = 4
  info = data.get_dataset_info(c)
  assert info.class_names == ("ant", "cat", "dog") and info.num_classes == 3
  assert (info.num_train, info.num_test) == (13, 7) and info.image_shape == (10, 12, 3)
  # The corrupt file is named when the pipeline reaches it.
  with pytest.raises(ValueError, match="zz_broken.jpg.*skip_corrupt=True"):
    _host(data.eval_iterator(c, "train"))
  # skip_corrupt counts, reports and leaves it out.
  c.data.skip_corrupt = True
  listing = folder_lib.list_split(str(root), "train", skip_corrupt=True)
  assert listing.skipped == (str(corrupt),) and len(listing.paths) == 12
  assert data.get_dataset_info(c).num_train == 12
  c.batch_size = 4
  batches = _host(data.train_iterator(c), 6)   # 3 steps per epoch, 2 epochs
  for b in batches:
    img, lab = _flat(b, "image"), _flat(b, "label")
    assert img.min() >= 0 and img.max() <= 1
    # Label = sorted class index: the dominant colour channel (red, green, blue).
    np.testing.assert_array_equal(img.mean((1, 2)).argmax(-1), lab)
    np.testing.assert_allclose(img.max((1, 2, 3)), 220 / 255, atol=4 / 255)


def test_folder_resize_imagenet_style_and_tf_without_gpu(image_folder):
  root, _ = image_folder
  c = _config(source="folder", root=str(root), skip_corrupt=True, image_size=16)
  c.batch_size = 4
  c.eval_batch_size = 8
  assert data.get_dataset_info(c).image_shape == (16, 16, 3)
  b = _host(data.train_iterator(c), 1)[0]
  assert b["image"].shape == (2, 2, 16, 16, 3)
  # A solid-colour image stays that colour through the resize.
  np.testing.assert_allclose(_flat(b, "image").max((1, 2, 3)), 220 / 255, atol=4 / 255)
  c.data.train_augment = "imagenet"   # random-resized crop, eval: centre crop
  assert data.get_dataset_info(c).image_shape == (16, 16, 3)
  b = _host(data.train_iterator(c), 1)[0]
  e = _host(data.eval_iterator(c, "test"), 1)[0]
  assert b["image"].shape == (2, 2, 16, 16, 3) and e["image"].shape == (2, 4, 16, 16, 3)
  np.testing.assert_array_equal(_flat(b, "image").mean((1, 2)).argmax(-1), _flat(b, "label"))
  # TensorFlow sees no GPU, so it never takes accelerator memory.
  assert tf.config.get_visible_devices("GPU") == []


def test_folder_skip_corrupt_logs(image_folder, caplog):
  root, _ = image_folder
  folder_lib.list_split.cache_clear()
  with caplog.at_level(logging.WARNING):
    folder_lib.list_split(str(root), "train", skip_corrupt=True)
  assert "skipped 1 corrupt image file(s)" in caplog.text and "zz_broken" in caplog.text


def test_folder_eval_odd_split_exactly_once(image_folder):
  root, _ = image_folder
  c = _config(source="folder", root=str(root))
  c.eval_batch_size = 4
  batches = _host(data.eval_iterator(c, "test"))
  assert len(batches) == 2   # 7 images: 4 + 3 and one padded slot
  mask = np.concatenate([_flat(b, "mask") for b in batches])
  images = np.concatenate([_flat(b, "image") for b in batches])
  labels = np.concatenate([_flat(b, "label") for b in batches])
  assert mask.tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
  levels = np.rint((images[mask == 1].mean((1, 2, 3)) * 255 - 20) / 30)
  assert sorted(levels.tolist()) == list(range(7))   # each image exactly once
  np.testing.assert_array_equal(labels[mask == 1], [0, 0, 0, 1, 1, 2, 2])


def test_folder_archive_extraction(image_folder, tmp_path):
  root, _ = image_folder
  archive = tmp_path / "mini.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(root, arcname="mini")   # one top-level folder, like cifar10/
  cache = tmp_path / "cache" / "mini_data"
  c = _config(source="folder", root=str(cache), archive=str(archive))
  c.data.skip_corrupt = True
  info = data.get_dataset_info(c)
  assert (cache / "train" / "ant").is_dir() and (info.num_train, info.num_test) == (12, 7)
  assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]
  with pytest.raises(ValueError, match="does not exist.*config.data.archive"):
    data.get_dataset_info(_config(source="folder", root=str(tmp_path / "nowhere")))


# ----------------------------------------------------------------------------
# TFDS.
# ----------------------------------------------------------------------------


def test_tfds_end_to_end_with_mock_data(tmp_path):
  c = _config(source="tfds", name="cifar10", data_dir=str(tmp_path / "tfds"),
              train_augment="crop_flip")
  c.batch_size = 4
  c.eval_batch_size = 4
  with tfds.testing.mock_data(num_examples=13):
    info = data.get_dataset_info(c)
    # cifar10's builder code names its classes only while generating the data
    # (from batches.meta.txt), so the mocked, ungenerated set reports '0'..'9'.
    assert info == data.DatasetInfo("cifar10", 10, 13, 13, (32, 32, 3),
                                    tuple("0123456789"))
    assert data.steps_per_epoch(c) == 3
    run = _host(data.train_iterator(c), 5)
    resumed = _host(data.train_iterator(c, start_step=4), 1)[0]
    evals = _host(data.eval_iterator(c))
  b = run[0]
  assert b["image"].shape == (2, 2, 32, 32, 3) and b["label"].shape == (2, 2)
  assert b["image"].min() >= 0 and b["image"].max() <= 1 and b["image"].max() > 0.5
  np.testing.assert_array_equal(resumed["image"], run[4]["image"])
  np.testing.assert_array_equal(resumed["label"], run[4]["label"])
  mask = np.concatenate([_flat(e, "mask") for e in evals])
  assert len(evals) == 4 and mask.sum() == 13 and mask.tolist()[-3:] == [0, 0, 0]
  # Each example carries its position in the split; padding carries the size.
  index = np.concatenate([_flat(e, "index") for e in evals])
  assert index.tolist() == list(range(13)) + [13] * 3


def test_tfds_missing_data_fails_at_once(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
    data.get_dataset_info(_config(source="tfds", name="cifar10",
                                  data_dir=str(tmp_path / "a")))
  with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar.*manual"):
    data.get_dataset_info(_config(source="tfds", name="imagenet2012",
                                  data_dir=str(tmp_path / "b")))
  with pytest.raises(ValueError, match="unknown TFDS data set 'no_such_set'"):
    data.get_dataset_info(_config(source="tfds", name="no_such_set",
                                  data_dir=str(tmp_path / "c")))


# ----------------------------------------------------------------------------
# Preprocessing.
# ----------------------------------------------------------------------------


def test_preprocess_crop_flip_center_crop_and_resized_crop():
  code = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :] + 1) / 1024.0
  img = tf.constant(np.repeat(code[:, :, None], 3, -1), tf.float32)
  offsets = set()
  for s in range(60):
    out = preprocess.crop_flip(img, tf.constant([s, 7], tf.int64)).numpy()[..., 0]
    nz = out > 0
    idx = np.rint(out * 1024).astype(int) - 1
    src_y, src_x = idx // 32, idx % 32
    ys, xs = np.nonzero(nz)
    dy = np.unique(src_y[nz] - ys)
    assert len(dy) == 1 and -4 <= dy[0] <= 4
    dx = src_x[nz] + xs   # flipped: src_x = 31 - x + off
    dx2 = src_x[nz] - xs  # not flipped: src_x = x + off
    assert len(np.unique(dx)) == 1 or len(np.unique(dx2)) == 1
    offsets.add((int(dy[0]), len(np.unique(dx)) == 1))
  assert {o for o, _ in offsets} <= set(range(-4, 5)) and len(offsets) > 8
  # ImageNet eval: shorter side -> 256, central 224 crop (exact when already 256).
  big = tf.random.stateless_uniform((256, 300, 3), [1, 2])
  np.testing.assert_allclose(preprocess.center_crop(big).numpy(),
                             big.numpy()[16:240, 38:262], atol=1e-6)
  wide = tf.random.stateless_uniform((375, 500, 3), [3, 4])
  assert preprocess.center_crop(wide).shape == (224, 224, 3)
  out = preprocess.train_preprocess(tf.cast(wide * 255, tf.uint8),
                                    tf.constant([5, 6], tf.int64),
                                    augment="imagenet", image_size=None)
  assert out.shape == (224, 224, 3) and out.dtype == tf.float32
  assert 0 <= out.numpy().min() and out.numpy().max() <= 1
  # Decoding only the JPEG window gives the crop of the fully decoded image
  # (same seed -> same window); for PNG it is the same code path, exactly.
  rng = np.random.default_rng(0)
  pic = Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).resize((500, 375))
  for fmt in ("JPEG", "PNG"):
    buf = io.BytesIO()
    pic.save(buf, format=fmt)
    encoded = tf.constant(buf.getvalue())
    for s in range(3):
      seed = tf.constant([s, 1], tf.int64)
      fast = preprocess.decode_random_resized_crop(encoded, seed, channels=3).numpy()
      full = preprocess.random_resized_crop(tf.io.decode_image(encoded, channels=3),
                                            seed).numpy()
      assert fast.shape == (224, 224, 3)
      assert np.abs(fast - full).mean() < (0.5 / 255 if fmt == "JPEG" else 1e-7)


# ----------------------------------------------------------------------------
# The real CIFAR-10 archive (../shared/data/cifar10-jpeg.tar.gz).
# ----------------------------------------------------------------------------


def test_real_cifar10_archive(shared_dir):
  cache = pathlib.Path("/tmp/eriep_jax_test_cache/cifar10")   # extracted once per machine
  c = _config(source="folder", root=str(cache),
              archive=str(shared_dir / "data" / "cifar10-jpeg.tar.gz"))
  c.eval_batch_size = 100
  info = data.get_dataset_info(c)
  assert (info.num_train, info.num_test) == (50_000, 10_000)
  assert info.class_names == CIFAR_CLASSES and info.image_shape == (32, 32, 3)
  # The test split in listing order starts with 1,000 airplanes (label 0); the
  # pipeline's decode (tf.io.decode_image) matches Pillow's.
  first = next(iter(data.eval_iterator(c)))
  labels, images = _flat(first, "label"), _flat(first, "image")
  assert np.all(labels == 0) and images.min() >= 0 and images.max() <= 1
  path = sorted((cache / "test" / "airplane").iterdir())[0]
  ref = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
  # libjpeg settings differ slightly (chroma upsampling): a few levels at most.
  np.testing.assert_allclose(images[0], ref, atol=6 / 255)
  assert np.abs(images[0] - ref).mean() < 1 / 255
  c.batch_size = 128
  batch = next(iter(data.train_iterator(c)))
  lab = _flat(batch, "label")
  assert lab.min() >= 0 and lab.max() <= 9 and len(np.unique(lab)) >= 8
  img = _flat(batch, "image")
  assert 0.3 < img.mean() < 0.6 and img.min() >= 0 and img.max() <= 1


def test_tfds_names_with_config_and_version_pass_the_config_check():
  from eriep_jax.data import sources  # pylint: disable=g-import-not-at-top
  c = tiny.data_config()
  for name in ("cifar10", "cifar10_corrupted/gaussian_noise_5", "cifar10:3.0.2",
               "cifar10_corrupted/fog_1:1.0.0"):
    c.data.name = name
    sources.check_data_config(c.data)   # no error
  assert sources.tfds_builder_name("cifar10_corrupted/fog_1:1.0.0") == "cifar10_corrupted"
  c.data.name = "cifar11/x"
  with pytest.raises(ValueError, match="unknown TFDS data set 'cifar11/x'"):
    sources.check_data_config(c.data)
  c.data.source = "hdfs"
  with pytest.raises(ValueError, match="unknown data.source 'hdfs'"):
    sources.check_data_config(c.data)
