"""Throughput of the EPM policy against one CNN-8 train step, in one process.

    python -m bench.policy                        # L=10, K=2, all 17 ops, 128x32x32x3
    python -m bench.policy --batch 64 --repeats 3 --op-shares --label "my laptop"

Prints images/s of
  * soft-mode forward+backward (gradients w.r.t. the policy M, P, W),
  * hard-mode forward,
  * one cross-entropy Adam train step of the paper's 8-layer CNN at full width
    (`eriep_jax.models.get_model('cnn8', 10)`, BatchNorm in train mode),
and the ratio time(soft fwd+bwd) / time(CNN step) (target <= 0.25). With
--op-shares it also times a soft fwd+bwd whose candidate list is a single op,
for each op, and prints each op's share of their sum: which ops dominate.
Figures are medians of `--repeats` timed runs after one warm-up (compile) run;
the three main figures are timed in turn within each repeat.
"""

import argparse
import dataclasses
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from bench._timing import machine_label, median_time
from eriep_jax import models
from eriep_jax import policy as policy_lib




def _time_interleaved(calls, *, repeats):
  for fn, args in calls:
    jax.block_until_ready(fn(*args))   # compile + warm-up
  times = [[] for _ in calls]
  for _ in range(repeats):
    for (fn, args), record in zip(calls, times):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      record.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]




def _soft_step(params, images, key, target):
  def loss(p):
    return jnp.mean((policy_lib.perturb(p, images, key) - target) ** 2)
  return jax.grad(loss)(params)


def _cnn_step_fn(model, tx):
  def step(variables, opt_state, images, labels):
    def loss(params):
      logits, state = model.apply({**variables, "params": params}, images, train=True,
                                  mutable=["batch_stats"])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return ce, state
    (ce, state), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], updates)
    return {**variables, **state, "params": params}, opt_state, ce
  return jax.jit(step)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=32, help="image height and width")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--subpolicies", type=int, default=10, help="L")
  parser.add_argument("--stages", type=int, default=2, help="K")
  parser.add_argument("--width", type=float, default=1.0, help="CNN-8 channel multiplier")
  parser.add_argument("--op-shares", action="store_true", help="time each op's share")
  parser.add_argument("--label", default="", help="machine label to print")
  args = parser.parse_args(argv)
  if min(args.batch, args.size, args.repeats, args.subpolicies, args.stages) < 1:
    parser.error("--batch, --size, --repeats, --subpolicies and --stages must be positive")

  key = jax.random.key(0)
  k_img, k_tgt, k_pol, k_lbl, k_init = jax.random.split(key, 5)
  shape = (args.batch, args.size, args.size, 3)
  images = jax.random.uniform(k_img, shape)
  target = jax.random.uniform(k_tgt, shape)
  labels = jax.random.randint(k_lbl, (args.batch,), 0, 10)
  config = policy_lib.PolicyConfig(num_subpolicies=args.subpolicies, num_stages=args.stages)
  params = policy_lib.init_policy(k_pol, config)

  print(machine_label(args.label))
  print(f"batch {shape}, L={args.subpolicies}, K={args.stages}, {len(config.ops)} ops; median "
        f"of {args.repeats} runs after warm-up; jax {jax.__version__}")

  soft = jax.jit(_soft_step)
  hard = jax.jit(functools.partial(policy_lib.perturb, mode="hard"))
  model = models.get_model("cnn8", 10, width=args.width)
  variables = model.init(k_init, images[:2], train=False)
  tx = optax.adam(1e-3)
  opt_state = tx.init(variables["params"])
  cnn = _cnn_step_fn(model, tx)
  # The three are timed in turn within each repeat, so that a busy machine
  # slows all of them alike and the ratio stays meaningful.
  t_soft, t_hard, t_cnn = _time_interleaved(
      [(soft, (params, images, key, target)), (hard, (params, images, key)),
       (cnn, (variables, opt_state, images, labels))], repeats=args.repeats)

  print(f"{'soft fwd+bwd (w.r.t. policy)':34s} {args.batch / t_soft:10.0f} img/s "
        f"{1e3 * t_soft:9.1f} ms/batch")
  print(f"{'hard fwd':34s} {args.batch / t_hard:10.0f} img/s {1e3 * t_hard:9.1f} ms/batch")
  print(f"{f'CNN-8 (width {args.width:g}) Adam train step':34s} {args.batch / t_cnn:10.0f} img/s "
        f"{1e3 * t_cnn:9.1f} ms/batch")
  print(f"ratio time(soft fwd+bwd) / time(CNN step) = {t_soft / t_cnn:.3f} (target <= 0.25)")

  if args.op_shares:
    times = {}
    for name in config.ops:
      single = policy_lib.init_policy(k_pol, dataclasses.replace(config, ops=(name,)))
      times[name] = median_time(jax.jit(_soft_step), single, images, key, target,
                          repeats=args.repeats)
    total = sum(times.values())
    print(f"\nsoft fwd+bwd with a single candidate op (K={args.stages} stages):")
    print(f"{'op':16s} {'ms/batch':>9s} {'share':>7s}")
    for name, t in sorted(times.items(), key=lambda kv: -kv[1]):
      print(f"{name:16s} {1e3 * t:9.1f} {100 * t / total:6.1f}%")
    print(f"{'sum':16s} {1e3 * total:9.1f}  (all 17 together: {1e3 * t_soft:.1f})")


if __name__ == "__main__":
  main()
