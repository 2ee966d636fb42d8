"""Our EPM beside Faster AutoAugment's public reimplementation (moskomule/dda), in one process.

    python -m bench.anchor_dda --dda /path/to/dda                # checkout of moskomule/dda
    python -m bench.anchor_dda --dda /path/to/dda --repeats 20 --chunks 8 --label "my box"

Not a dependency of the project: it needs a Python environment with both this
package and PyTorch (CPU) plus kornia (0.5.11 runs dda's policy), and a checkout
of https://github.com/moskomule/dda. Without any of them it exits with one
sentence. No assertions.

On the same batch of random images (128 x 32 x 32 x 3 by default; NCHW for
dda, NHWC here) it times medians of ``--repeats`` runs after one warm-up, in
blocks of consecutive calls that alternate between the libraries over three
rounds (`_median_times` says why not call by call):

* dda's ``Policy.faster_auto_augment_policy`` (L = 10 sub-policies of K = 2
  stages over its 15 operations, ``--chunks`` chunks of the batch, one
  sub-policy per chunk): soft mode (``train()``) forward + backward of a
  squared-error loss with respect to the policy's parameters, and hard mode
  (``eval()``, under ``torch.no_grad``) forward;
* ``eriep_jax.perturb`` with L = 10, K = 2 and all 17 Table-1 ops, one
  sub-policy per image: ``jax.grad`` of the same loss with respect to the
  policy (soft), and ``mode='hard'`` forward, each jitted;

and prints images/s of each and the ratios ours / dda. dda draws one
sub-policy per chunk and applies every candidate op only in soft mode; this
library draws one per image in both modes. PyTorch uses every core
(``torch.get_num_threads()``), as XLA does.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench._timing import machine_label
from eriep_jax import policy as policy_lib


def _load_dda(path: str):
  """(torch, dda's Policy class) or exits with one sentence naming what is missing."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit("bench.anchor_dda needs PyTorch: pip install torch (the CPU wheel) into this "
             "environment, or run it from one that has it.")
  try:
    import kornia  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    sys.exit("bench.anchor_dda needs kornia for dda's operations: pip install kornia==0.5.11.")
  if not path or not os.path.isfile(os.path.join(path, "faster_autoaugment", "policy.py")):
    sys.exit(f"--dda={path!r} is not a checkout of moskomule/dda (no faster_autoaugment/policy.py"
             "); git clone https://github.com/moskomule/dda and pass its folder.")
  sys.path[:0] = [path, os.path.join(path, "faster_autoaugment")]
  try:
    from policy import Policy  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f"dda's policy could not be imported from {path!r} ({type(e).__name__}: {e}); "
             "check that its torch and kornia versions match (kornia 0.5.11 ran it).")
  return torch, Policy


def _median_times(calls, repeats, rounds=3):
  """Median seconds per call of each function, timed in blocks.

  Each of `rounds` rounds runs every function `repeats // rounds` (at least
  1) times in a row, after a pause, not call by call in turn: after each
  call PyTorch's OpenMP threads keep spinning for a while, and on a 2-core
  box they took a core from the XLA call that followed (ours measured 1,342
  img/s interleaved call by call against 1,804 alone, 2026-12-05), and
  passive waiting instead slows dda's own calls by 2.8x. The rounds keep
  both libraries under the same machine state over the run.
  """
  for fn in calls:
    fn()                                    # warm-up (compile for JAX)
  times = [[] for _ in calls]
  for _ in range(rounds):
    for fn, record in zip(calls, times):
      time.sleep(0.5)                       # let the other library's threads go idle
      fn()
      for _ in range(max(1, repeats // rounds)):
        start = time.perf_counter()
        fn()
        record.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dda", default=os.environ.get("DDA_PATH", ""),
                      help="a checkout of moskomule/dda (or set DDA_PATH)")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--chunks", type=int, default=8,
                      help="dda's num_chunks (its search config: 8)")
  parser.add_argument("--label", default="")
  args = parser.parse_args(argv)
  if min(args.batch, args.size, args.repeats, args.chunks) < 1:
    parser.error("--batch, --size, --repeats and --chunks must be positive")
  torch, Policy = _load_dda(args.dda)

  rng = np.random.default_rng(0)
  nhwc = rng.uniform(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
  target = rng.uniform(size=nhwc.shape).astype(np.float32)

  # dda: its search's policy (15 ops, L = 10, K = 2, T = 0.05).
  torch.manual_seed(0)
  dda = Policy.faster_auto_augment_policy(10, 0.05, 2, args.chunks)
  x_t = torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())
  y_t = torch.from_numpy(target.transpose(0, 3, 1, 2).copy())

  def dda_soft():
    dda.train()
    dda.zero_grad()
    loss = (dda(x_t.clone()) - y_t).pow(2).mean()
    loss.backward()

  def dda_hard():
    dda.eval()
    with torch.no_grad():
      dda(x_t.clone())

  # Ours: the default policy (17 ops, L = 10, K = 2).
  params = policy_lib.init_policy(jax.random.key(0), policy_lib.PolicyConfig())
  x_j, y_j, key = jnp.asarray(nhwc), jnp.asarray(target), jax.random.key(1)
  # The images are arguments, not closed-over constants, which XLA would try to fold.
  soft_grad = jax.jit(jax.grad(
      lambda p, x, y, k: jnp.mean((policy_lib.perturb(p, x, k) - y) ** 2)))
  hard = jax.jit(lambda p, x, k: policy_lib.perturb(p, x, k, mode="hard"))

  def ours_soft():
    jax.block_until_ready(soft_grad(params, x_j, y_j, key))

  def ours_hard():
    jax.block_until_ready(hard(params, x_j, key))

  print(machine_label(args.label))
  print(f"batch {args.batch}x{args.size}x{args.size}x3; medians of {args.repeats} runs in "
        f"alternating blocks after a warm-up; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"jax {jax.__version__}; dda: 15 ops, {args.chunks} chunks; ours: 17 ops, per image")
  t_ds, t_os, t_dh, t_oh = _median_times([dda_soft, ours_soft, dda_hard, ours_hard], args.repeats)
  rate = lambda t: args.batch / t  # noqa: E731
  print(f"{'':34s} {'dda img/s':>12s} {'ours img/s':>12s} {'ours / dda':>11s}")
  print(f"{'soft forward + backward (policy)':34s} {rate(t_ds):12,.0f} {rate(t_os):12,.0f} "
        f"{t_ds / t_os:10.2f}x")
  print(f"{'hard forward':34s} {rate(t_dh):12,.0f} {rate(t_oh):12,.0f} {t_dh / t_oh:10.2f}x")


if __name__ == "__main__":
  main()
