"""Image-folder source: `<root>/<split>/<class>/<image>`, classes in sorted order.

This is the layout of users' own data and of the real CIFAR-10 archive at
../shared/data/cifar10-jpeg.tar.gz. Point `config.data.archive` at a .tar.gz
and `config.data.root` at a cache folder; the archive is extracted there once
(into a temporary sibling, then renamed, so concurrent processes are safe).
When the archive holds a single top-level folder (the CIFAR archive holds
`cifar10/`), that folder becomes the root:

    python launch.py --config=configs/cifar10_cnn8.py \\
        --config.data.source=folder \\
        --config.data.archive=../shared/data/cifar10-jpeg.tar.gz \\
        --config.data.root=~/.cache/eriep_jax/cifar10

Files are listed (not decoded) up front, which takes well under a second for
60,000 files. Decoding happens inside tf.data. A file that fails to decode
stops the pipeline with a ValueError naming it. With `skip_corrupt=True` every
file is decoded once at listing time (in parallel, in tf.data), and the bad
ones are counted, logged and left out.

TensorFlow is imported inside the decoding functions, so listing files needs no TensorFlow.
"""

import functools
import logging
import os
import pathlib
import shutil
import tarfile
import tempfile
from typing import NamedTuple

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

_log = logging.getLogger(__name__)


class FolderSplit(NamedTuple):
  """The listing of one split of an image folder.

  Attributes:
    paths: (N,) file paths, class by class, files sorted by name.
    labels: (N,) int32 class indices (position in `class_names`).
    class_names: the sorted class folder names.
    skipped: paths of corrupt files left out (skip_corrupt=True only).
  """
  paths: np.ndarray
  labels: np.ndarray
  class_names: tuple
  skipped: tuple


def prepare_root(root: str, archive: str | None = None) -> pathlib.Path:
  """Returns the image-folder root, extracting `archive` into it if absent.

  Args:
    root: the folder holding `train/` and `test/` (`~` is expanded).
    archive: optional .tar.gz (or .tar) extracted into `root` when `root`
      does not exist yet. A single top-level folder inside the archive (such
      as `cifar10/`) is unwrapped.

  Returns:
    The root path.

  Raises:
    ValueError: if root is unset, or missing with no archive to extract.
    FileNotFoundError: if the archive does not exist.
  """
  if not root:
    raise ValueError("config.data.root is not set; set it to a folder with "
                     "<root>/{train,test}/<class>/<image>, e.g. "
                     "--config.data.root=~/.cache/eriep_jax/cifar10")
  path = pathlib.Path(root).expanduser()
  if path.is_dir():
    return path
  if not archive:
    raise ValueError(
        f"image folder root {str(path)!r} does not exist; create it with "
        "<root>/{train,test}/<class>/<image>, or set config.data.archive to a "
        ".tar.gz to extract there")
  archive_path = pathlib.Path(archive).expanduser()
  if not archive_path.is_file():
    raise FileNotFoundError(f"archive {str(archive_path)!r} does not exist; fix "
                            "config.data.archive (e.g. ../shared/data/cifar10-jpeg.tar.gz)")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.extract-",
                                      dir=path.parent))
  try:
    _log.info("extracting %s into %s", archive_path, path)
    with tarfile.open(archive_path) as tar:
      tar.extractall(tmp, filter="data")
    entries = [e for e in tmp.iterdir() if not e.name.startswith(".")]
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    try:
      os.rename(source, path)
    except OSError:
      if not path.is_dir():   # another process may have won the race
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path


def _scan_files(root: pathlib.Path, split: str) -> tuple[list, list, tuple]:
  split_dir = root / split
  if not split_dir.is_dir():
    have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise ValueError(f"split folder {str(split_dir)!r} does not exist (found "
                     f"{have}); use the layout <root>/{{train,test}}/<class>/<image>")
  class_names = tuple(sorted(e.name for e in os.scandir(split_dir)
                             if e.is_dir() and not e.name.startswith(".")))
  if not class_names:
    raise ValueError(f"{str(split_dir)!r} has no class folders; use the layout "
                     "<root>/<split>/<class>/<image>")
  paths, labels = [], []
  for label, name in enumerate(class_names):
    files = sorted(e.name for e in os.scandir(split_dir / name)
                   if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
    paths += [str(split_dir / name / f) for f in files]
    labels += [label] * len(files)
  if not paths:
    raise ValueError(f"{str(split_dir)!r} holds no image files with extensions "
                     f"{IMAGE_EXTENSIONS}")
  return paths, labels, class_names


def decode_file(path, channels: int):
  """Reads and decodes one image file to uint8 (H, W, channels), in TF."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                             expand_animations=False)
  return image


def find_corrupt(paths, *, channels: int = 3) -> list:
  """Returns the paths that fail to read or decode (one parallel tf.data pass).

  Args:
    paths: file paths.
    channels: the channel count to decode to.

  Returns:
    The failing paths, in input order.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  paths = np.asarray(paths)
  ds = tf.data.Dataset.from_tensor_slices((paths, np.arange(len(paths))))
  ds = ds.map(lambda p, i: (i, tf.shape(decode_file(p, channels))),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.ignore_errors().batch(4096)   # few Python round trips
  ok = np.zeros(len(paths), bool)
  for idx, _ in ds.as_numpy_iterator():
    ok[idx] = True
  return [str(p) for p in paths[~ok]]


@functools.lru_cache(maxsize=16)
def list_split(root: str, split: str, *, skip_corrupt: bool = False,
               channels: int = 3) -> FolderSplit:
  """Lists `<root>/<split>/<class>/<image>` (cached per process).

  Args:
    root: the prepared root (see `prepare_root`).
    split: 'train', 'test' or another split folder.
    skip_corrupt: decode every file once and leave out those that fail; the
      count is logged and returned in `skipped`.
    channels: channels to decode to (for the corrupt-file check).

  Returns:
    The FolderSplit.

  Raises:
    ValueError: for a missing split folder, no classes or no images.
  """
  paths, labels, class_names = _scan_files(pathlib.Path(root), split)
  skipped = ()
  if skip_corrupt:
    bad = set(find_corrupt(paths, channels=channels))
    if bad:
      skipped = tuple(p for p in paths if p in bad)
      keep = [i for i, p in enumerate(paths) if p not in bad]
      paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
      _log.warning("skipped %d corrupt image file(s) in %s/%s: %s%s", len(skipped),
                   root, split, ", ".join(skipped[:5]),
                   " ..." if len(skipped) > 5 else "")
  return FolderSplit(np.asarray(paths), np.asarray(labels, np.int32),
                     class_names, skipped)


def raise_corrupt(paths, error: Exception, *, channels: int = 3) -> None:
  """Finds the file behind a tf.data decode error and raises a ValueError naming it.

  Args:
    paths: the files the failing pipeline read.
    error: the TensorFlow error.
    channels: the channel count decoded to.

  Raises:
    ValueError: naming the first corrupt file, or describing `error` when no
      file fails on its own (e.g. images of different sizes).
  """
  bad = find_corrupt(paths, channels=channels)
  if bad:
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ValueError(
        f"cannot decode image file {bad[0]!r}{more}; remove or replace it, or set "
        "config.data.skip_corrupt=True to skip corrupt files") from error
  raise ValueError(
      f"the image pipeline failed ({str(error).splitlines()[0][:300]}); if the "
      "images differ in size, set config.data.image_size") from error
