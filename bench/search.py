"""Stage-1 search step throughput of each critic and the projected CIFAR-10 search time.

    python -m bench.search                          # every critic, at the default width 1.0
    python -m bench.search --width 0.5              # the CPU study's width
    python -m bench.search --critics cnn8:batch --steps 5
    python -m bench.search --ops flip,invert,rotate --subpolicies 2

No assertions. ``--critics`` lists backbone:norm pairs (default: cnn8 with none,
layer, group and batch norm, and Faster AutoAugment's wrn40_2 with batch norm).

Builds the search state and the pmapped search step of
``configs/cifar10_search.py`` (cnn8 critic, L = 10 sub-policies of K = 2 stages
over all 17 ops, batch 128 split in halves, 32x32x3 images), runs one
compiling warm-up step, then times ``--steps`` steps on random images already
on the devices (``block_until_ready`` after each), so the figure is the step
itself, without the input pipeline. It prints images/s (the batch counts all
128 images: 64 perturbed and scored, 64 clean) and projects the wall time of
the full default search, 4,000 images x 20 epochs = 620 steps, next to
Faster AutoAugment's reported 0.23 GPU-hours for its CIFAR-10 search.
"""

import argparse
import time

import jax
import numpy as np

import configs.cifar10_search as search_config
from eriep_jax import parallel
from eriep_jax import search

FASTER_AA_GPU_HOURS = 0.23


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
  parser.add_argument("--batch_size", type=int, default=128, help="global search batch")
  parser.add_argument("--width", type=float, default=1.0, help="critic backbone width")
  parser.add_argument("--critics", default="cnn8:none,cnn8:layer,cnn8:group,cnn8:batch,"
                      "wrn40_2:batch", help="comma-separated backbone:norm pairs")
  parser.add_argument("--ops", default="", help="comma-separated op subset (default: all 17)")
  parser.add_argument("--subpolicies", type=int, default=10)
  parser.add_argument("--image_size", type=int, default=32)
  args = parser.parse_args()
  rows = []
  for critic in args.critics.split(","):
    backbone, norm = critic.split(":")
    rows.append((critic, bench_one(args, backbone, norm)))
  print("\nsummary (median step, images/s, projected 620-step search):")
  for critic, (sec, ips, hours) in rows:
    print(f"  {critic:14s} {sec * 1e3:7.0f} ms  {ips:7.1f} img/s  {hours * 60:6.1f} min")


def bench_one(args, backbone: str, norm: str) -> tuple[float, float, float]:
  """Times one critic; prints its figures and returns (seconds per step, img/s, hours)."""
  config = search_config.get_config()
  config.search.batch_size = args.batch_size
  config.search.width = args.width
  config.search.backbone = backbone
  config.search.norm = norm
  config.policy.num_subpolicies = args.subpolicies
  if args.ops:
    config.policy.ops = tuple(args.ops.split(","))
  devices = jax.local_device_count()
  search.check_search_config(config, num_devices=devices)
  shape = (args.image_size, args.image_size, 3)

  state, critic = search.create_search_state(config, jax.random.key(0), shape, 10)
  step = search.make_search_step(config, critic)
  state = parallel.replicate(state)
  keys = jax.random.key(1)
  per_device = args.batch_size // devices
  k1, k2 = jax.random.split(jax.random.key(2))
  batch = {"image": jax.random.uniform(k1, (devices, per_device) + shape),
           "label": jax.random.randint(k2, (devices, per_device), 0, 10)}

  start = time.perf_counter()
  state, metrics = step(state, batch, keys)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = step(state, batch, keys)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  sec = float(np.median(times))
  ips = args.batch_size / sec
  total_steps = (config.search.num_examples // 128) * config.search.num_epochs
  projected_h = total_steps * 128 / ips / 3600

  print(f"device: {jax.devices()[0].platform} x {devices} ({jax.devices()[0].device_kind})")
  print(f"critic: {backbone} ({norm} norm) width {args.width}, policy: L={config.policy.num_subpolicies} "
        f"K={config.policy.num_stages} N={len(config.policy.ops)} ops, batch {args.batch_size} "
        f"({args.batch_size // 2} A + {args.batch_size // 2} B'), images {shape}")
  print(f"first step (compile + run): {compile_s:.1f} s")
  print(f"search step: {sec * 1e3:.0f} ms median of {args.steps} -> {ips:.1f} images/s")
  print(f"full default CIFAR-10 search ({config.search.num_examples} images x "
        f"{config.search.num_epochs} epochs = {total_steps} steps of 128): "
        f"{projected_h * 3600:.0f} s = {projected_h:.3f} h of steps projected here, plus "
        f"{compile_s:.0f} s compile; Faster AutoAugment reports {FASTER_AA_GPU_HOURS} GPU-hours "
        f"(ratio {projected_h / FASTER_AA_GPU_HOURS:.3g}x)")
  # One random batch, repeated: the critic over-fits it within a few steps, so
  # these values are a finiteness check, not a measure of search quality.
  print("finite metrics after the last step:",
        all(np.isfinite(float(v[0])) for v in metrics.values()))
  return sec, ips, projected_h


if __name__ == "__main__":
  main()
