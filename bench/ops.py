"""Throughput of the 17 Table-1 operations (forward and forward+backward).

    python -m bench.ops                      # 256x32x32x3, 5 timed runs
    python -m bench.ops --batch 128 --repeats 10 --label "my laptop"

For each op it prints images/s of the jitted forward pass and of the jitted
forward+backward pass (gradients in the images and the per-sample magnitudes),
then the same for all 17 ops applied to one batch in one jitted function (what
the soft policy evaluates per stage). Each op runs as the EPM calls it, its
`unit_fn` where it has one (shear's shorter barrel for |m| <= 1; the magnitudes
here lie in [-1, 1]). Figures are medians of `--repeats` timed runs after one
warm-up run, on JAX's default device.
"""

import argparse

import jax
import jax.numpy as jnp

from bench._timing import machine_label, median_time
from eriep_jax import ops






def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--size", type=int, default=32, help="image height and width")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--ops", default="all", help="comma-separated op names")
  parser.add_argument("--label", default="", help="machine label to print")
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.batch < 1 or args.size < 1:
    parser.error("--batch, --size and --repeats must be positive")
  specs = list(ops.OPS.values()) if args.ops == "all" else ops.get_ops(
      args.ops.split(","))

  key = jax.random.key(0)
  kx, km, kw = jax.random.split(key, 3)
  shape = (args.batch, args.size, args.size, 3)
  images = jax.random.uniform(kx, shape)
  mags = jax.random.uniform(km, (args.batch,), minval=0.1, maxval=0.9)
  weights = jax.random.normal(kw, shape)

  print(machine_label(args.label))
  print(f"batch {shape}, median of {args.repeats} runs after warm-up, "
        f"jax {jax.__version__}")
  print(f"{'op':16s} {'fwd img/s':>12s} {'fwd+bwd img/s':>14s}")

  def loss_of(fn):
    # The weights are an argument (not a constant) so that XLA cannot fold
    # the backward pass away; value_and_grad keeps the forward pass in.
    return lambda x, m, k, w: jnp.sum(fn(x, m, k) * w)

  for spec in specs:
    fn = spec.unit_fn or spec.fn
    fwd = jax.jit(fn)
    bwd = jax.jit(jax.value_and_grad(loss_of(fn), argnums=(0, 1)))
    t_f = median_time(fwd, images, mags, key, repeats=args.repeats)
    t_b = median_time(bwd, images, mags, key, weights, repeats=args.repeats)
    print(f"{spec.name:16s} {args.batch / t_f:12.0f} {args.batch / t_b:14.0f}")

  def all_ops(x, m, k):
    keys = jax.random.split(k, len(specs))
    return sum((s.unit_fn or s.fn)(x, m, kk) for s, kk in zip(specs, keys))

  t_f = median_time(jax.jit(all_ops), images, mags, key, repeats=args.repeats)
  t_b = median_time(jax.jit(jax.value_and_grad(loss_of(all_ops), argnums=(0, 1))),
              images, mags, key, weights, repeats=args.repeats)
  print(f"{'all ' + str(len(specs)) + ' ops':16s} {args.batch / t_f:12.0f} "
        f"{args.batch / t_b:14.0f}")
  print(f"all {len(specs)} ops on one batch: forward {t_f * 1e3:.1f} ms, "
        f"forward+backward {t_b * 1e3:.1f} ms")


if __name__ == "__main__":
  main()
