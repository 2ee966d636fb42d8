"""Input-pipeline throughput: prints images/s; no assertions.

    python -m bench.data [--steps 100] [--cifar_root /tmp/eriep_jax_bench/cifar10]

1. CIFAR-10 training from the image folder (read, JPEG decode, crop_flip,
   batch 128, shard and prefetch to the devices), from the real archive
   ../shared/data/cifar10-jpeg.tar.gz extracted under /tmp when it is there,
   else from 5,000 generated 32x32 JPEGs.
2. ImageNet-style preprocessing of generated 500x375 JPEGs: training
   (random-resized crop 224 + flip, batch 64) and evaluation (resize 256,
   centre crop 224, batch 64).
3. The Table-2 evaluation perturbations, jitted, on a (500, 32, 32, 3) batch.
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

import configs.default as default_config  # pylint: disable=g-import-not-at-top
from eriep_jax import data  # pylint: disable=g-import-not-at-top
from eriep_jax.evaluate import perturbations  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _generate(root: pathlib.Path, size: tuple, per_class: int, classes: int,
              seed: int = 0) -> None:
  if root.is_dir():
    return
  rng = np.random.default_rng(seed)
  tmp = root.with_name(root.name + ".tmp")
  for split in ("train", "test"):
    for c in range(classes):
      d = tmp / split / f"class_{c:02d}"
      d.mkdir(parents=True, exist_ok=True)
      for i in range(per_class):
        # Smooth random images compress like photos, unlike white noise.
        small = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, 3), np.uint8)
        img = Image.fromarray(small).resize(size, Image.BILINEAR)
        img.save(d / f"{i:05d}.jpg", quality=90)
  tmp.rename(root)


def _throughput(it, batch_size: int, steps: int, warmup: int = 5) -> float:
  for _ in range(warmup):
    jax.block_until_ready(next(it))
  t = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(next(it))
  return steps * batch_size / (time.perf_counter() - t)


def _eval_throughput(config, batch_size: int) -> float:
  t, n = time.perf_counter(), 0
  for b in data.eval_iterator(config, "train", batch_size=batch_size):
    jax.block_until_ready(b)
    n += int(np.asarray(b["mask"]).sum())
  return n / (time.perf_counter() - t)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--cifar_root", default="/tmp/eriep_jax_bench/cifar10")
  parser.add_argument("--work", default="/tmp/eriep_jax_bench")
  args = parser.parse_args()
  work = pathlib.Path(args.work)
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, "
        f"CPU cores: {os.cpu_count()}")

  # 1. CIFAR-10 from the image folder.
  c = default_config.get_config()
  c.data.source = "folder"
  c.data.train_augment = "crop_flip"
  c.batch_size = 128
  if ARCHIVE.exists():
    c.data.root, c.data.archive = args.cifar_root, str(ARCHIVE)
    what = "real CIFAR-10 archive"
  else:
    root = work / "cifar_like"
    _generate(root, (32, 32), 500, 10)
    c.data.root, what = str(root), "5,000 generated 32x32 JPEGs"
  t = time.perf_counter()
  info = data.get_dataset_info(c)
  print(f"[cifar10 folder, {what}] listing {info.num_train:,} + {info.num_test:,} "
        f"files (+ extraction if first run): {time.perf_counter() - t:.1f} s")
  ips = _throughput(data.train_iterator(c), c.batch_size, args.steps)
  print(f"[cifar10 folder] train crop_flip, batch 128: {ips:,.0f} images/s")
  c.data.train_augment = "none"
  ips = _throughput(data.train_iterator(c), c.batch_size, args.steps)
  print(f"[cifar10 folder] train none, batch 128: {ips:,.0f} images/s")

  # 2. ImageNet-style preprocessing of 500x375 JPEGs.
  root = work / "imagenet_like"
  _generate(root, (500, 375), 40, 10)
  c = default_config.get_config()
  c.data.source, c.data.root = "folder", str(root)
  c.data.train_augment = "imagenet"
  c.batch_size = 64
  steps = max(10, args.steps // 5)
  ips = _throughput(data.train_iterator(c), c.batch_size, steps)
  print(f"[imagenet-style 500x375 JPEG] train random-resized-crop 224 + flip, "
        f"batch 64: {ips:,.0f} images/s")
  ips = _eval_throughput(c, 64)
  print(f"[imagenet-style 500x375 JPEG] eval resize 256 + centre crop 224, "
        f"batch 64: {ips:,.0f} images/s")

  # 3. Evaluation perturbations on a CIFAR-sized batch.
  x = np.random.default_rng(0).uniform(size=(500, 32, 32, 3)).astype(np.float32)
  x = jax.device_put(x)
  for name in ("perturb1", "perturb2", "perturb3", "noise_0.2"):
    fn = jax.jit(perturbations.get_eval_perturbation(name))
    key = jax.random.key(0)
    jax.block_until_ready(fn(x, key))
    reps = 20
    t = time.perf_counter()
    for i in range(reps):
      jax.block_until_ready(fn(x, jax.random.fold_in(key, i)))
    print(f"[perturbation] {name} jitted, batch 500x32x32x3: "
          f"{reps * 500 / (time.perf_counter() - t):,.0f} images/s")


if __name__ == "__main__":
  main()
