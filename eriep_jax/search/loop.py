"""The stage-1 loop: ``run_search`` trains the policy and writes it; ``resolve_policy``.

``resolve_policy(config, workdir, key)`` gives the policy that
``config.policy.source`` names: ``'init'``, ``'search'`` (running the search),
``'random'`` or a path.
"""

import collections
import functools
import json
import os
import pathlib
import time
from typing import Any, Mapping, Optional, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from eriep_jax import data as data_lib
from eriep_jax import models
from eriep_jax import parallel
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax import writers
from eriep_jax.search import checks
from eriep_jax.search import critic as critic_lib
from eriep_jax.search import health
from eriep_jax.policy import files as policy_files
from eriep_jax.search import step as step_lib

__all__ = ["run_search", "resolve_policy"]


def _num_steps(config: ml_collections.ConfigDict, num_train: Optional[int]) -> tuple[int, int]:
  """(total steps, examples per epoch) of the search."""
  s = config.search
  examples = s.num_examples if num_train is None else min(s.num_examples, num_train)
  if examples < s.batch_size:
    raise ValueError(f"config.search.batch_size {s.batch_size} is larger than the {examples} "
                     "training examples available to the search; use a smaller batch size.")
  steps_per_epoch = examples // s.batch_size
  if s.get("num_steps", -1) > 0:
    return int(s.num_steps), examples
  return max(1, int(round(s.num_epochs * steps_per_epoch))), examples


def _progress_line(step: int, total: int, metrics: Mapping[str, float], rate: float) -> str:
  parts = [f"search {step}/{total}", f"W {metrics['wasserstein']:+.4f}",
           f"GP {metrics['gp']:.4f}", f"L_critic {metrics['critic_loss']:+.4f}",
           f"L_policy {metrics['policy_loss']:+.4f}",
           f"CE_real {metrics['ce_real']:.3f}", f"acc_real {metrics['acc_real']:.2f}"]
  if "heldout_acc" in metrics:
    parts.append(f"held-out {metrics['heldout_acc']:.2f}")
  if "heldout_acc_real_stats" in metrics:
    parts[-1] += f" ({metrics['heldout_acc_real_stats']:.2f} real stats)"
  parts += [f"H{k[len('entropy_stage'):]} {v:.3f}" for k, v in metrics.items()
            if k.startswith("entropy_stage")]
  parts.append(f"{rate:.1f} img/s")
  return " | ".join(parts)


def run_search(config: ml_collections.ConfigDict, workdir: os.PathLike) -> Any:
  """Runs stage 1 (Algorithm 1, "OPTIMIZE EPM") and writes its results.

  Trains the policy against the WGAN-GP critic for ``search.num_epochs``
  epochs over ``search.num_examples`` training images (``search.num_steps >
  0`` overrides), pmapped over the local devices. Logs the Wasserstein
  estimate, the gradient penalty, both losses and each stage's op-weight
  entropy every ``search.log_every_steps`` steps, with a progress line.

  Writes to ``workdir``: ``policy_checkpoint/`` (orbax), ``policy_params.json``
  (the raw parameters, exact and small enough to commit), ``policy_init.json``
  (the same for the policy the search started from), ``policy.json``
  (the discretised :class:`~eriep_jax.policy.Policy`), ``policy_summary.txt``
  (also printed), ``policy_grid.png`` and ``search_log.json`` (the logged
  metrics, the wall time and the search's health: the classifier's held-out
  accuracy, the control's when ``search.control`` is set, and how far p, mu
  and W moved; see :mod:`eriep_jax.search.health`). The search uses ``config.search.seed`` (not the
  run's ``config.seed``), so one searched policy serves every seed of a sweep.

  Args:
    config: the experiment config.
    workdir: output folder (created).

  Returns:
    The searched :class:`~eriep_jax.policy.PolicyParams`, on the host.

  Raises:
    ValueError: for bad ``config.search`` values (before any compute).
  """
  num_devices = jax.local_device_count()
  checks.check_search_config(config, num_devices=num_devices)
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  s = config.search

  info = data_lib.get_dataset_info(config)
  total_steps, examples = _num_steps(config, info.num_train)

  seed = int(s.get("seed", 0))
  key = rng.purpose_key(seed, "search")
  key_init, key_steps, key_grid = jax.random.split(key, 3)
  state, critic_module = step_lib.create_search_state(config, key_init, tuple(info.image_shape),
                                             info.num_classes, **critic_lib.backbone_options(config))
  initial_policy = jax.device_get(state.policy)
  step_fn = step_lib.make_search_step(config, critic_module,
                             train_policy=s.get("train_policy", True))
  state = parallel.replicate(state)

  # Read before any step, so that a bad held-out setting stops the search before compute.
  heldout = _heldout(config, examples)
  batches = data_lib.train_iterator(config, seed=seed, num_examples=examples,
                                    batch_size=s.batch_size)
  writer = writers.create_writer(str(workdir), just_logging=jax.process_index() > 0,
                                 tensorboard=data_lib.uses_tensorflow(config.data))
  log_every = max(1, int(s.get("log_every_steps", config.get("log_every_steps", 50))))
  grid_images = None
  logging.info("stage-1 search: %d steps of %d images on %d devices, %d examples",
               total_steps, s.batch_size, num_devices, examples)
  start = last = time.perf_counter()
  last_step = 0
  log = []
  # The last real training batches, for f's accuracy under real-image statistics.
  recent = collections.deque(maxlen=RECALIBRATION_BATCHES)
  for step in range(1, total_steps + 1):
    batch = next(batches)
    if grid_images is None:
      grid_images = np.asarray(jax.device_get(batch["image"]))[0][:8]
    if heldout is not None:
      images = np.asarray(jax.device_get(batch["image"]))
      recent.append(images.reshape((-1,) + images.shape[2:]))
    state, metrics = step_fn(state, {"image": batch["image"], "label": batch["label"]},
                             key_steps)
    if step % log_every == 0 or step == total_steps:
      metrics = {k: float(v) for k, v in parallel.unreplicate(metrics).items()}
      now = time.perf_counter()
      rate = (step - last_step) * s.batch_size / max(now - last, 1e-9)
      metrics["images_per_sec"] = rate
      if heldout is not None and s.get("heldout_curve", True):
        metrics.update(_heldout_metrics(critic_module, parallel.unreplicate(state.critic),
                                        heldout, list(recent)))
        now = time.perf_counter()
      writer.write_scalars(step, metrics)
      log.append(dict(step=step, **metrics))
      if config.get("progress", True):
        print(_progress_line(step, total_steps, metrics, rate), flush=True)
      last, last_step = now, step
  writer.flush()
  wall = time.perf_counter() - start
  logging.info("stage-1 search done in %.1f s", wall)
  params = parallel.unreplicate(state.policy)

  accuracy = accuracy_real_stats = None
  if heldout is not None:
    final = _heldout_metrics(critic_module, parallel.unreplicate(state.critic), heldout,
                             list(recent))
    accuracy = final["heldout_acc"]
    accuracy_real_stats = final.get("heldout_acc_real_stats")
  control = None
  if s.get("control", False):
    control = run_control(config, key_init, info, examples, total_steps, heldout)
  report = health.search_health(
      log, initial_policy, jax.device_get(params), num_classes=info.num_classes,
      heldout_accuracy=accuracy, heldout_examples=0 if heldout is None else len(heldout["label"]),
      control=control, heldout_accuracy_real_stats=accuracy_real_stats)
  report["wall_time_s"] = wall
  for line in health.summary_lines(report):
    print(line, flush=True)
  for warning in report["warnings"]:
    logging.warning("%s", warning)
    print(f"WARNING: {warning}", flush=True)
  # The log is written before the policy: a policy file marks a finished search.
  (workdir / policy_files.SEARCH_LOG).write_text(json.dumps(
      {"num_steps": total_steps, "num_examples": examples, "batch_size": s.batch_size,
       "seed": seed, "wall_time_s": wall, "settings": _settings(config), "health": report,
       "log": log}, indent=1), encoding="utf-8")
  (workdir / policy_files.INITIAL_PARAMS_JSON).write_text(policy_lib.params_to_json(initial_policy),
                                                encoding="utf-8")
  policy_files.save_policy(params, workdir, images=grid_images, key=key_grid)
  return params


def _settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The search and policy settings a reader needs to tell two searches apart."""
  s, p = config.search, config.policy
  return {"backbone": s.backbone, "width": s.width, "norm": s.norm, "eps": s.eps,
          "classifier_weight": step_lib.classifier_weight(config),
          "lambda_gp": s.lambda_gp, "gp_norm": s.get("gp_norm", "sample"),
          "learning_rate": s.learning_rate, "b1": s.b1, "b2": s.b2,
          "policy_init": p.get("init", "uniform"),
          "parameterization": p.get("parameterization", "projected")}


def _heldout(config: ml_collections.ConfigDict,
             examples: int) -> Optional[dict[str, np.ndarray]]:
  s = config.search
  count = int(s.get("num_heldout", 1000))
  if count <= 0:
    return None
  return data_lib.heldout_arrays(config, num_examples=examples, count=count,
                                 split=s.get("heldout_split", "train"))


# Real training batches whose batch-norm statistics stand in for the running ones.
RECALIBRATION_BATCHES = 8


def real_batch_stats(critic_module: Any, variables: Any, batches: Sequence[np.ndarray]) -> Any:
  """The critic's batch-norm statistics re-estimated on real images only.

  The search's critic normalises each step's concatenation of real and
  perturbed images, so its running statistics describe that mixture, not the
  real images a classifier is judged on. This averages, over ``batches`` (real
  training images, each of the training step's size), the per-batch mean and
  variance of every batch-norm layer at the current weights (recovered from
  one momentum update as ``(new - m * old) / (1 - m)``). No weights change.

  Returns:
    the new ``batch_stats`` tree, or None when the critic has none.
  """
  stats = variables.get("batch_stats")
  if stats is None or not batches:
    return None
  momentum = models.BN_MOMENTUM

  per_batch = [_batch_stats(critic_module, variables, x, momentum) for x in batches]
  return jax.tree.map(lambda *xs: sum(xs) / len(xs), *per_batch)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _batch_stats(critic_module: Any, variables: Any, x: jax.Array, momentum: float) -> Any:
  _, _, new = critic_lib.critic_apply(critic_module, variables, x, train=True)
  return jax.tree.map(lambda n, o: (n - momentum * o) / (1.0 - momentum), new,
                      variables["batch_stats"])


@functools.partial(jax.jit, static_argnums=0)
def _predict(critic_module: Any, variables: Any, x: jax.Array) -> jax.Array:
  return jax.numpy.argmax(critic_lib.critic_apply(critic_module, variables, x, train=False)[0],
                          -1)


def _heldout_metrics(critic_module: Any, variables: Any, heldout: Mapping[str, np.ndarray],
                     recent: Sequence[np.ndarray]) -> dict[str, float]:
  """f's held-out accuracy with the running statistics and, under batch norm, real ones."""
  out = {"heldout_acc": classifier_accuracy(critic_module, variables, heldout)}
  stats = real_batch_stats(critic_module, variables, recent)
  if stats is not None:
    out["heldout_acc_real_stats"] = classifier_accuracy(
        critic_module, dict(variables, batch_stats=stats), heldout)
  return out


def classifier_accuracy(critic_module: Any, variables: Any,
                        heldout: Mapping[str, np.ndarray], *, batch_size: int = 250) -> float:
  """The accuracy of the critic's classifier f on host arrays (inference mode)."""
  images, labels = heldout["image"], heldout["label"]
  correct = 0
  for i in range(0, len(labels), batch_size):
    correct += int(np.sum(np.asarray(_predict(critic_module, variables, images[i:i + batch_size])) ==
                          labels[i:i + batch_size]))
  return correct / len(labels)


def run_control(config: ml_collections.ConfigDict, key_init: jax.Array, info: Any,
                examples: int, total_steps: int,
                heldout: Optional[Mapping[str, np.ndarray]]) -> dict[str, Any]:
  """The classifier control: the search's backbone trained by cross-entropy alone.

  Same initial weights (the same key), batches, steps and optimizer as the
  search's critic; only f's loss on B' (see :func:`step.control_step`).

  Returns:
    ``{'heldout_accuracy', 'final_ce_real', 'wall_time_s'}``.
  """
  s = config.search
  seed = int(s.get("seed", 0))
  state, critic_module = step_lib.create_search_state(
      config, key_init, tuple(info.image_shape), info.num_classes,
      **critic_lib.backbone_options(config))
  step_fn = step_lib.make_control_step(config, critic_module)
  state = parallel.replicate(state)
  batches = data_lib.train_iterator(config, seed=seed, num_examples=examples,
                                    batch_size=s.batch_size)
  start = time.perf_counter()
  tail = []
  for step in range(1, total_steps + 1):
    batch = next(batches)
    state, metrics = step_fn(state, {"image": batch["image"], "label": batch["label"]})
    if step > total_steps - 20:
      tail.append(float(parallel.unreplicate(metrics)["ce_real"]))
  wall = time.perf_counter() - start
  accuracy = None if heldout is None else classifier_accuracy(
      critic_module, parallel.unreplicate(state.critic), heldout)
  return {"heldout_accuracy": accuracy, "final_ce_real": float(np.mean(tail)),
          "wall_time_s": wall}


def resolve_policy(config: ml_collections.ConfigDict, workdir: os.PathLike,
                   key: jax.Array) -> Any:
  """The policy stage 2 starts from, per ``config.policy.source``.

  Args:
    config: the experiment config.
    workdir: the run's workdir; ``'search'`` searches into ``workdir/search``.
    key: PRNG key for ``'init'``.

  Returns:
    :class:`~eriep_jax.policy.PolicyParams`: ``'init'`` -> ``init_policy``;
    ``'search'`` -> :func:`run_search` first; ``'random'`` -> the discrete
    ``random_policy(config.policy.seed)`` embedded with
    :func:`params_from_policy`; any other string -> the policy loaded from
    that path (:func:`load_policy`).

  Raises:
    ValueError: for an empty source, or a missing/corrupt path (naming it).
  """
  return policy_files.resolve_source(
      config, key, run_search=lambda: run_search(config, pathlib.Path(workdir) / "search"))
