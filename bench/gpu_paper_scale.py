"""Table 3's cnn8 protocol at the paper's scale on one accelerator, without TensorFlow.

    python -m bench.gpu_paper_scale --archive ../shared/data/cifar10-jpeg.tar.gz --out OUT
    python -m bench.gpu_paper_scale --archive A --out OUT --epochs 50 --methods standard,eriep \
        --policy results/cifar10_cpu/search_v2/default/policy_params.json --seed 0

For the project's GPU machine, which has JAX, flax, optax, orbax, chex, absl and
Pillow but not TensorFlow, TFDS, ml_collections or clu (carry the last two as
wheels on PYTHONPATH; see docs/performance.md). It:

1. decodes the CIFAR-10 JPEG archive (the project's ``cifar10-jpeg.tar.gz``)
   with Pillow into uint8 arrays, kept on the device (class index = sorted
   folder name, as the folder pipeline does);
2. trains each method with the library's own stage-2 step
   (``eriep_jax.train.step.make_train_step``, jitted on one device) and the
   config of ``configs/cifar10_cnn8.py`` (Table 3: cnn8 at width 1, batch 128,
   Adam 1e-3, no train augmentation, 50 epochs, alpha 0.5, sync_freq 100),
   starting from the committed searched policy; each epoch visits the 50,000
   training images once in an order drawn from (seed, epoch), dropping the
   last partial batch as the tf.data pipeline does (390 steps an epoch), so
   the order differs from the tf.data pipeline's but not its statistics;
3. scores the result with the library's robustness step
   (``eriep_jax.evaluate.robustness.robustness_sweep`` on in-memory batches:
   the same per-example perturbation keys as ``--mode=eval``);
4. writes ``OUT/<method>/seed_<k>/eval/results.{json,md}`` that
   ``launch.py --mode=report`` reads, with the wall times and the commit.

It prints progress every ``--log_every`` steps. Not a test: it asserts nothing.
"""

import argparse
import io
import json
import os
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from configs import cifar10_cnn8
from eriep_jax import models
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax.evaluate import robustness
from eriep_jax.train import state as state_lib
from eriep_jax.train import step as step_lib


def load_archive(path: str, limit: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (images uint8 (N, 32, 32, 3), labels int32), 'test': ...} from the JPEG archive."""
  files = {"train": [], "test": []}
  with tarfile.open(path, "r:gz") as tar:
    for member in tar:
      parts = member.name.split("/")
      if not member.isfile() or len(parts) < 4 or parts[-3] not in files:
        continue
      files[parts[-3]].append((parts[-2], parts[-1], tar.extractfile(member).read()))
  out = {}
  for split, items in files.items():
    if not items:
      raise ValueError(f"{path!r} holds no {split} images (expected cifar10/{split}/<class>/"
                       "*.jpg); pass the project's cifar10-jpeg.tar.gz.")
    classes = sorted({c for c, _, _ in items})
    items.sort(key=lambda t: (t[0], t[1]))
    if limit:
      items = items[::max(1, len(items) // limit)][:limit]
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.uint8)
                       for _, _, b in items])
    labels = np.asarray([classes.index(c) for c, _, _ in items], np.int32)
    out[split] = (images, labels)
  return out


def train_one(c, data, policy, log_every: int):
  """Trains the run of config ``c`` (method, seed); returns (model, variables, steps, wall s)."""
  method, seed = c.method, c.seed
  train_x, train_y = data["train"]
  per_epoch = train_x.shape[0] // c.batch_size
  total = per_epoch * c.num_epochs
  model = models.get_model(c.model.name, 10, width=c.model.width)
  tx = state_lib.make_optimizer(c, total)
  ptx = state_lib.make_policy_optimizer(c)
  state = state_lib.create_train_state(model, policy, rng.purpose_key(seed, "init"),
                                       image_shape=train_x.shape[1:], tx=tx, policy_tx=ptx)
  step_fn = step_lib.make_train_step(c, model=model, tx=tx, policy_tx=ptx,
                                     learning_rate_fn=state_lib.learning_rate_schedule(c, total),
                                     axis_name=None)
  images_dev, labels_dev = jnp.asarray(train_x), jnp.asarray(train_y)

  @jax.jit
  def run_step(state, idx, key):
    batch = {"image": images_dev[idx].astype(jnp.float32) / 255.0, "label": labels_dev[idx]}
    return step_fn(state, batch, key)

  steps_key = rng.purpose_key(seed, "steps")
  start, metrics, t = time.perf_counter(), {}, 0
  for epoch in range(c.num_epochs):
    order = np.random.default_rng([seed, epoch]).permutation(train_x.shape[0])
    for i in range(per_epoch):
      idx = jnp.asarray(order[i * c.batch_size:(i + 1) * c.batch_size])
      state, metrics = run_step(state, idx, jax.random.fold_in(steps_key, t))
      t += 1
      if t % log_every == 0 or t == total:
        m = jax.device_get(metrics)
        print(f"  {method} step {t}/{total} (epoch {epoch + 1}): loss {float(m['loss']):.3f} "
              f"acc {float(m['accuracy']):.3f} {time.perf_counter() - start:.0f} s", flush=True)
  jax.block_until_ready(state)
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return model, variables, total, time.perf_counter() - start


def eval_batches(test_x, test_y, batch_size: int):
  """The in-memory test split as ``data.eval_iterator`` yields it on one device."""
  n = test_x.shape[0]
  for lo in range(0, n, batch_size):
    idx = np.arange(lo, min(lo + batch_size, n))
    pad = batch_size - idx.size
    image = np.concatenate([test_x[idx], np.zeros((pad,) + test_x.shape[1:], np.uint8)])
    yield {"image": (image.astype(np.float32) / 255.0)[None],
           "label": np.concatenate([test_y[idx], np.zeros(pad, np.int32)])[None],
           "mask": np.concatenate([np.ones(idx.size), np.zeros(pad)]).astype(np.float32)[None],
           "index": np.concatenate([idx, np.full(pad, n)]).astype(np.int32)[None]}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--archive", required=True, help="cifar10-jpeg.tar.gz")
  parser.add_argument("--out", required=True, help="results folder (one per method and seed)")
  parser.add_argument("--policy", default="results/cifar10_cpu/search_v2/default/policy_params.json")
  parser.add_argument("--methods", default="standard,eriep")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--limit", type=int, default=0, help="images per split (0: all; smoke tests)")
  parser.add_argument("--log_every", type=int, default=1000)
  parser.add_argument("--commit", default=os.environ.get("GIT_COMMIT", "unknown"))
  args = parser.parse_args(argv)
  if not os.path.isfile(args.archive):
    raise SystemExit(f"--archive={args.archive!r} does not exist; pass the project's "
                     "cifar10-jpeg.tar.gz (../shared/data/).")
  if not os.path.isfile(args.policy):
    raise SystemExit(f"--policy={args.policy!r} does not exist; pass a policy_params.json "
                     "(the committed search: results/cifar10_cpu/search_v2/default/).")
  config = cifar10_cnn8.get_config()
  config.num_epochs = args.epochs
  config.model.width = args.width
  config.write_plots = False            # no matplotlib there
  config.data.train_augment = "none"    # Table 3: no train augmentation (recorded)
  config.policy.source = args.policy
  policy = policy_lib.params_from_json(open(args.policy, encoding="utf-8").read())
  t0 = time.perf_counter()
  data = load_archive(args.archive, args.limit or None)
  print(f"decoded {data['train'][0].shape[0]} train / {data['test'][0].shape[0]} test images in "
        f"{time.perf_counter() - t0:.0f} s; devices {jax.devices()}", flush=True)
  for method in args.methods.split(","):
    c = config.copy_and_resolve_references()
    c.method, c.seed = method, args.seed
    model, variables, steps, wall = train_one(c, data, policy, args.log_every)
    t1 = time.perf_counter()
    sweep = robustness.robustness_sweep(c, model=model, variables=variables,
                                        batches=eval_batches(*data["test"], 1000))
    results = {"method": method, "variant": method, "seed": args.seed, "reference": c.reference,
               "model": c.model.name, "width": c.model.width, "dataset": "cifar10-jpeg (in memory)",
               "step": steps, "alpha": c.alpha, "sync_freq": c.sync_freq,
               "policy_source": args.policy, "git_commit": args.commit,
               "jax_version": jax.__version__, "device": str(jax.devices()[0]),
               "train_wall_time_s": wall, "eval_wall_time_s": time.perf_counter() - t1,
               "protocol": {"batch_size": c.batch_size, "num_epochs": c.num_epochs,
                            "num_train_steps": steps, "optimizer": c.optimizer.name,
                            "learning_rate": float(c.optimizer.learning_rate),
                            "train_augment": c.data.train_augment,
                            "data_order": "numpy permutation per (seed, epoch)"},
               **sweep}
    robustness.write_results(c, os.path.join(args.out, method, f"seed_{args.seed}"), results)
    # The record on stdout too, one line: a remote run's log then holds the whole result.
    print("RESULTS_JSON " + json.dumps(results, separators=(",", ":")), flush=True)
    acc = sweep["accuracy"]
    print(f"{method}: " + ", ".join(f"{k} {acc[k]:.2f}" for k in robustness.TABLE_COLUMNS)
          + f" ({wall:.0f} s training)", flush=True)
  print(json.dumps({"out": args.out}), flush=True)


if __name__ == "__main__":
  main()
