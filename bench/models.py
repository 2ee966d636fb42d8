"""Throughput of the registry models: forward and train-step images/s.

    python -m bench.models                                   # the issue's default set
    python -m bench.models --models cnn8,resnet18 --repeats 3 --dtypes float32
    python -m bench.models --models convnext_tiny --image-size 224 --batch 32 --width 0.25

Default set (as the issue asks): every CIFAR model (cnn4/8/12/16, vgg16,
resnet18 with the CIFAR stem) at 32x32 and batch 128, plus resnet50 (ImageNet
stem) and convnext_tiny at 224x224 and batch 32. ``--batch``/``--image-size``
override every selected model. For each model and compute dtype it times

* forward: the jitted eval-mode ``apply`` (logits only);
* train step: a jitted SGD-momentum step on softmax cross-entropy, with the
  BatchNorm statistics update, parameters donated as in a real loop;

on the default device, after one compiling warm-up call, over ``--repeats``
calls (``block_until_ready`` after each), and prints images/s per row. The
figures are a throughput measurement, not a test; nothing is asserted.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import optax

from eriep_jax.models import get_model, list_models

CIFAR_MODELS = ("cnn4", "cnn8", "cnn12", "cnn16", "vgg16", "resnet18")
# name -> (image size, batch size) of the default run; ResNets use the ImageNet stem
# from 128x128 up and the CIFAR stem below.
DEFAULTS = {
    **{name: (32, 128) for name in CIFAR_MODELS},
    "resnet50": (224, 32),
    "convnext_tiny": (224, 32),
}


def _time(fn, repeats: int) -> float:
  """Seconds per call of ``fn`` (already compiled), median of ``repeats`` calls."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def bench_one(name: str, *, size: int, batch: int, dtype: str, width: float, repeats: int,
              options: dict) -> dict:
  """Compiles and times forward and train step of one model; returns the figures."""
  model = get_model(name, 10, width=width, dtype=dtype, **options)
  key = jax.random.key(0)
  x = jax.random.uniform(key, (batch, size, size, 3), jnp.float32)
  labels = jax.random.randint(jax.random.fold_in(key, 1), (batch,), 0, 10)
  variables = jax.jit(model.init)(key, x[:1])
  params = variables["params"]
  stats = variables.get("batch_stats", {})
  tx = optax.sgd(0.01, momentum=0.9)
  opt_state = tx.init(params)

  forward = jax.jit(functools.partial(model.apply, train=False))

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(params, stats, opt_state, x, labels):
    def loss_fn(params):
      logits, new_state = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, new_state.get("batch_stats", {})
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  variables = {"params": params, **({"batch_stats": stats} if stats else {})}
  start = time.perf_counter()
  jax.block_until_ready(forward(variables, x))
  compile_fwd = time.perf_counter() - start
  t_fwd = _time(lambda: forward(variables, x), repeats)

  state = [jax.tree_util.tree_map(jnp.copy, params), jax.tree_util.tree_map(jnp.copy, stats),
           opt_state]

  def step():
    state[0], state[1], state[2], loss = train_step(state[0], state[1], state[2], x, labels)
    return loss

  start = time.perf_counter()
  jax.block_until_ready(step())
  compile_train = time.perf_counter() - start
  t_train = _time(step, repeats)
  n_params = sum(a.size for a in jax.tree_util.tree_leaves(params))
  return dict(name=name, size=size, batch=batch, dtype=dtype, width=width, params=n_params,
              fwd=batch / t_fwd, train=batch / t_train, compile_fwd=compile_fwd,
              compile_train=compile_train)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default=",".join(DEFAULTS),
                      help=f"comma-separated names from {list_models()}")
  parser.add_argument("--batch", type=int, default=None, help="override every model's batch")
  parser.add_argument("--image-size", type=int, default=None,
                      help="override every model's input size (32 or 224 by default)")
  parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes to time")
  parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
  args = parser.parse_args(argv)

  names = [n.strip() for n in args.models.split(",") if n.strip()]
  unknown = [n for n in names if n not in list_models()]
  if unknown:
    parser.error(f"unknown model(s) {unknown}; valid names are {list_models()}")
  if args.repeats < 1:
    parser.error(f"--repeats {args.repeats} must be at least 1")
  dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]

  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind} (x{jax.device_count()}), jax {jax.__version__}")
  print(f"repeats={args.repeats} (median), width={args.width}, SGD-momentum train step with "
        "BN statistics update")
  header = (f"{'model':<14}{'size':>5}{'batch':>6}{'dtype':>10}{'params':>12}"
            f"{'fwd img/s':>11}{'train img/s':>13}{'compile s (fwd/train)':>23}")
  print(header)
  print("-" * len(header))
  for name in names:
    size, batch = DEFAULTS.get(name, (32, 128))
    size = args.image_size or size
    batch = args.batch or batch
    # ResNets: the CIFAR stem for small inputs, the ImageNet stem for ImageNet-sized ones.
    options = {"stem": "imagenet" if size >= 128 else "cifar"} if name.startswith("resnet") else {}
    for dtype in dtypes:
      r = bench_one(name, size=size, batch=batch, dtype=dtype, width=args.width,
                    repeats=args.repeats, options=options)
      print(f"{r['name']:<14}{r['size']:>5}{r['batch']:>6}{r['dtype']:>10}{r['params']:>12,}"
            f"{r['fwd']:>11.1f}{r['train']:>13.1f}"
            f"{r['compile_fwd']:>11.1f} / {r['compile_train']:<9.1f}", flush=True)


if __name__ == "__main__":
  main()
