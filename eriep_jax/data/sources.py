"""Data sources behind the input pipelines: TFDS, image folders and the demo set.

`config.data.source` selects one:

  tfds    `tfds.builder(config.data.name, data_dir=config.data.data_dir)`; any
          TFDS image-classification set with 'image' and 'label' features
          (cifar10, cifar100, imagenet2012, ...). Nothing is downloaded: when
          the prepared files are missing, `get_source` fails at once and says
          where to put them.
  folder  `<root>/{train,test}/<class>/<image>` (see `folder.py`).
  demo    scikit-learn's digits, resized to 32x32x3, or to `data.image_size` (`demo.py`).

Folder and demo sources are *indexed*: the pipeline draws a permutation of
example indices per epoch and loads examples by index, so skipping ahead to a
step costs nothing. TFDS sources are *streamed*: the pipeline shuffles the
record stream with a per-epoch seed.

`config.data.pipeline` selects how batches are made (`resolve_pipeline`):

  tfdata  tf.data (this module's IndexedSource and TfdsSource); the default
          wherever TensorFlow is installed, and the only path for TFDS.
  memory  demo and folder sources decoded once into host arrays (`memory.py`),
          without TensorFlow: for machines that have no TensorFlow, and for
          the demo, whose 1,797 images are born as arrays.
  auto    tfdata when TensorFlow can be imported, else memory.

TensorFlow is imported (and every GPU hidden from it, so that it never takes
accelerator memory from JAX) only when a tf.data source is built: importing
this module costs no TensorFlow. TensorFlow Datasets is imported inside the
TFDS functions: folder and demo sources never load it.
"""

import functools
import importlib.util
import pathlib
import sys
from typing import Any, Callable, NamedTuple

import numpy as np

from eriep_jax.data import demo as demo_lib
from eriep_jax.data import folder as folder_lib

SOURCES = ("tfds", "folder", "demo")
PIPELINES = ("auto", "tfdata", "memory")
MEMORY_SOURCES = ("demo", "folder")
TRAIN_AUGMENTS = ("none", "crop_flip", "imagenet")
EVAL_CROPS = ("auto", "none", "center")
IMAGENET_SIZE = 224
SUBSET_SEED = 0   # the fixed shuffle that training subsets (the search's images) come from


def tensorflow_available() -> bool:
  """Whether ``import tensorflow`` can succeed here, without importing it."""
  if "tensorflow" in sys.modules:
    return sys.modules["tensorflow"] is not None
  try:
    return importlib.util.find_spec("tensorflow") is not None
  except (ImportError, ValueError):
    return False


# launch.py sets this to False for --verbose.
QUIET_TENSORFLOW_IMPORT = True


def _import_tensorflow_quietly():
  # TensorFlow's oneDNN notice and absl's pre-initialisation warning go straight to file
  # descriptor 2 (TF_CPP_MIN_LOG_LEVEL does not silence them), so the descriptor points at
  # /dev/null for the import only.
  import os  # pylint: disable=g-import-not-at-top
  saved = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(null, 2)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)
  return tf


@functools.lru_cache(maxsize=1)
def tf_module():
  """Imports TensorFlow once (quietly unless ``--verbose``) and hides every GPU from it."""
  if QUIET_TENSORFLOW_IMPORT and "tensorflow" not in sys.modules:
    tf = _import_tensorflow_quietly()
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # TF already initialised its devices; nothing to hide.
    pass
  return tf


def uses_tensorflow(data_config) -> bool:
  """Whether a run of ``config.data`` imports TensorFlow (its pipeline is tf.data)."""
  return resolve_pipeline(data_config) == "tfdata"


def resolve_pipeline(data_config) -> str:
  """'tfdata' or 'memory': what ``config.data.pipeline`` means on this machine.

  Raises:
    ValueError: for an unknown pipeline, a memory pipeline for TFDS data, or a
      tf.data pipeline without TensorFlow; the sentence names the fix.
  """
  pipeline = data_config.get("pipeline", "auto")
  source = data_config.source
  if pipeline not in PIPELINES:
    raise ValueError(f"unknown config.data.pipeline {pipeline!r}; use one of {PIPELINES}.")
  if pipeline == "memory" and source not in MEMORY_SOURCES:
    raise ValueError(f"config.data.pipeline='memory' reads only {MEMORY_SOURCES} sources, not "
                     f"data.source={source!r}; use pipeline='tfdata' (or 'auto') for TFDS data.")
  if pipeline == "memory":
    return "memory"
  if tensorflow_available():
    return "tfdata"
  if pipeline == "tfdata" or source not in MEMORY_SOURCES:
    raise ValueError(
        f"data.source={source!r} with config.data.pipeline={pipeline!r} needs TensorFlow, "
        "which cannot be imported here; install tensorflow (and tensorflow-datasets for TFDS), "
        "or use data.source='folder' or 'demo' with config.data.pipeline='memory'.")
  return "memory"


class DatasetInfo(NamedTuple):
  """What a model and a training loop need to know about a data set.

  Attributes:
    name: the data set name ('cifar10', 'demo', or the folder's name).
    num_classes: the number of classes.
    num_train: training examples used (after `num_train_examples`).
    num_test: examples in the evaluation split ('test', or 'validation' for
      TFDS sets without a test split).
    image_shape: (H, W, C) after preprocessing.
    class_names: class names in label order.
  """
  name: str
  num_classes: int
  num_train: int
  num_test: int
  image_shape: tuple
  class_names: tuple


class IndexedSplit(NamedTuple):
  """One split of an indexed source.

  Attributes:
    num_examples: N.
    labels: (N,) int32 labels.
    load: tf function index -> image (uint8 or float32 [0, 1], (H, W, C)).
    paths: (N,) file paths for folder sources (to name a corrupt file), else None.
    read: tf function index -> encoded image bytes (folder sources), else None.
  """
  num_examples: int
  labels: np.ndarray
  load: Callable[[Any], Any]
  paths: np.ndarray | None
  read: Callable[[Any], Any] | None = None


class IndexedSource:
  """A folder or demo source whose examples are addressed by index."""

  def __init__(self, name: str, class_names: tuple, raw_shape: tuple,
               splits: dict[str, Callable[[], IndexedSplit]]):
    self.name = name
    self.class_names = tuple(class_names)
    self.raw_shape = tuple(raw_shape)
    self.channels = raw_shape[-1]
    self._splits = splits

  def split(self, split: str) -> IndexedSplit:
    if split not in self._splits:
      raise ValueError(f"split {split!r} does not exist in {self.name!r}; use one "
                       f"of {sorted(self._splits)}")
    return self._splits[split]()

  def num_examples(self, split: str) -> int:
    return self.split(split).num_examples


def _demo_source(size: int) -> IndexedSource:
  data = demo_lib.load_demo(size)

  def make(split):
    images, labels = data[split]
    tf = tf_module()
    table = tf.constant(images)
    return IndexedSplit(len(labels), labels, lambda i: tf.gather(table, i), None)

  return IndexedSource("demo", demo_lib.CLASS_NAMES, data["train"][0].shape[1:],
                       {s: functools.partial(make, s) for s in data})


def _folder_source(root: str, archive: str | None, skip_corrupt: bool) -> IndexedSource:
  path = folder_lib.prepare_root(root, archive)
  splits = sorted(p.name for p in path.iterdir()
                  if p.is_dir() and not p.name.startswith("."))
  if "train" not in splits:
    raise ValueError(f"image folder {str(path)!r} has no train/ folder (found "
                     f"{splits}); use the layout <root>/{{train,test}}/<class>/<image>")
  channels = 3
  tf = tf_module()

  def make(split):
    listing = folder_lib.list_split(str(path), split, skip_corrupt=skip_corrupt,
                                    channels=channels)
    table = tf.constant(listing.paths)
    return IndexedSplit(
        len(listing.labels), listing.labels,
        lambda i: folder_lib.decode_file(tf.gather(table, i), channels),
        listing.paths, lambda i: tf.io.read_file(tf.gather(table, i)))

  train = folder_lib.list_split(str(path), "train", skip_corrupt=skip_corrupt,
                                channels=channels)
  raw_shape = None
  for p in train.paths[:16]:   # the first readable image gives the size
    try:
      raw_shape = tuple(folder_lib.decode_file(p, channels).shape)
      break
    except tf.errors.OpError:
      continue
  if raw_shape is None:
    folder_lib.raise_corrupt(train.paths[:16], ValueError("no readable image"),
                             channels=channels)
  return IndexedSource(path.name, train.class_names, raw_shape,
                       {s: functools.partial(make, s) for s in splits})


class TfdsSource:
  """A TFDS data set, read as a stream of records."""

  def __init__(self, name: str, data_dir: str | None):
    tf_module()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    try:
      self.builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise ValueError(f"unknown TFDS data set {name!r}; use a TFDS name such as "
                       "'cifar10', 'cifar100' or 'imagenet2012', or "
                       "config.data.source='folder'") from e
    features = self.builder.info.features
    if "image" not in features or "label" not in features:
      raise ValueError(f"TFDS data set {name!r} has features {list(features)}; the "
                       "pipeline needs 'image' and 'label' (an image-classification set)")
    self.name = name
    self.data_dir = data_dir
    self.class_names = tuple(features["label"].names)
    shape = tuple(features["image"].shape)
    self.channels = shape[-1] or 3
    self.raw_shape = shape[:-1] + (self.channels,)
    self._check_prepared()

  def _where(self) -> str:
    where = self.data_dir or "~/tensorflow_datasets"
    msg = (f"TFDS data set {self.name!r} is not prepared under data_dir={where!r} "
           "and cannot be downloaded here; ")
    if self.name.startswith("imagenet"):
      manual = pathlib.Path(where).expanduser() / "downloads" / "manual"
      return msg + (f"put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into "
                    f"{str(manual)!r} and run `tfds build {self.name} "
                    f"--data_dir={where}`, or use config.data.source='folder'")
    return msg + (f"run `tfds build {self.name} --data_dir={where}` on a machine "
                  f"with network access and copy {where}/{self.name} here, set "
                  "config.data.data_dir to that folder, or use config.data.source='folder'")

  def _check_prepared(self) -> None:
    splits = list(self.builder.info.splits) if self.builder.info.splits else ["train"]
    try:   # as_dataset never downloads: it fails at once when files are missing.
      self.builder.as_dataset(split=splits[0])
    except (AssertionError, FileNotFoundError, tf_module().errors.NotFoundError) as e:
      raise FileNotFoundError(self._where()) from e

  def resolve_split(self, split: str) -> str:
    known = list(self.builder.info.splits) if self.builder.info.splits else []
    if not known or split in known:
      return split
    if split == "test" and "validation" in known:
      return "validation"   # ImageNet evaluates on its validation split.
    raise ValueError(f"split {split!r} does not exist in {self.name!r}; use one "
                     f"of {known}")

  def as_dataset(self, split: str):
    """(image bytes, label) records of `split`, in file order (a tf.data.Dataset)."""
    tfds, tf = self._tfds, tf_module()
    ds = self.builder.as_dataset(
        split=split, shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False))
    return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))

  def num_examples(self, split: str) -> int:
    n = int(self.as_dataset(split).cardinality())
    if n < 0:
      n = self.builder.info.splits[split].num_examples
    return n

  def process_split(self, split: str, index: int, count: int) -> str:
    """The sub-split this process reads (tfds.even_splits)."""
    return split if count == 1 else self._tfds.even_splits(split, n=count)[index]

  def decode(self, image):
    return tf_module().io.decode_image(image, channels=self.channels, expand_animations=False)


def tfds_builder_name(name: str) -> str:
  """The builder of a TFDS name ``name[/config][:version]``, e.g. ``cifar10_corrupted``."""
  return str(name).split(":", 1)[0].split("/", 1)[0]


def check_data_config(data_config) -> None:
  """Checks ``config.data``'s source and, for TFDS, the builder name, before any compute.

  TFDS names may carry a config and a version (``cifar10_corrupted/gaussian_noise_5``,
  ``cifar10:3.0.2``); only the builder is looked up.

  Raises:
    ValueError: naming the bad value and the fix.
  """
  if data_config.source not in SOURCES:
    raise ValueError(f"unknown data.source {data_config.source!r}; use one of {SOURCES}.")
  if data_config.source == "tfds":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds_builder_name(data_config.name)
    if not builder or builder not in tfds.list_builders():
      raise ValueError(f"unknown TFDS data set {data_config.name!r}; use a TFDS name such as "
                       "'cifar10' or 'cifar10_corrupted/gaussian_noise_5', or "
                       "data.source='folder' with data.root.")


@functools.lru_cache(maxsize=8)
def _cached_source(source: str, name: str, data_dir, root, archive, skip_corrupt, pipeline,
                   demo_size):
  if pipeline == "memory":
    from eriep_jax.data import memory  # pylint: disable=g-import-not-at-top
    return memory.array_source(source, root, archive, skip_corrupt, demo_size)
  if source == "demo":
    return _demo_source(demo_size)
  if source == "folder":
    return _folder_source(root, archive, skip_corrupt)
  return TfdsSource(name, data_dir)


def get_source(data_config):
  """Builds (once per process) the source that `config.data` selects.

  Args:
    data_config: `config.data`.

  Returns:
    An IndexedSource (folder, demo) or a TfdsSource for the tf.data pipeline,
    or a `memory.ArraySource` for the in-memory one (`resolve_pipeline`).

  Raises:
    ValueError: for an unknown source or data set name, a missing folder.
    FileNotFoundError: for a TFDS set that is not prepared.
  """
  source = data_config.source
  if source not in SOURCES:
    raise ValueError(f"unknown config.data.source {source!r}; use one of "
                     f"{', '.join(SOURCES)}")
  root = data_config.get("root")
  root = str(pathlib.Path(root).expanduser().resolve()) if root else None
  # The demo set is rendered at data.image_size (the digits are 8x8, so resizing them once,
  # straight to that size, is the only resize), so no pipeline resizes it again.
  demo_size = data_config.get("image_size") or demo_lib.DEMO_SIZE
  return _cached_source(source, data_config.name, data_config.get("data_dir"), root,
                        data_config.get("archive"), bool(data_config.get("skip_corrupt")),
                        resolve_pipeline(data_config), demo_size)
