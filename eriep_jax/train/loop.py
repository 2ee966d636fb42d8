"""The stage-2 training loop: pmap steps, logging, orbax checkpoints, resume.

Entry points (``launch.py`` calls ``run``)::

  results = run(config, workdir)                 # train (+ compare_methods) + evaluate
  out = train(config, workdir)                   # one method, returns state and history
  check_config(config)                           # every bad value, before compute

A rerun with the same workdir resumes from the latest checkpoint (state, data
position and key), and reproduces the straight run exactly. A checkpoint from
a different model or config is refused. SIGTERM (cluster preemption) saves a
checkpoint and returns.
"""

import copy
import dataclasses
import functools
import math
import os
import signal
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax.train import checkpoint as ckpt_lib
from eriep_jax.train import state as state_lib
from eriep_jax.train import step as step_lib
from eriep_jax.train import writers

__all__ = ["check_config", "build_model", "train", "train_and_evaluate", "run", "TrainResult"]

_REDUCTIONS = ("example", "batch")
_SOURCES = ("tfds", "folder", "demo")
_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("constant", "step")


@dataclasses.dataclass
class TrainResult:
  """What ``train`` returns.

  Attributes:
    state: the final unreplicated ``TrainState`` (host arrays).
    history: one dict per logged step: ``step`` and the metrics averaged over
      the steps since the previous log.
    step: the number of completed steps.
    finished: False if the run stopped early (SIGTERM or ``stop_after_steps``).
    model: the classifier (built without a BN axis name, for evaluation).
  """
  state: Any
  history: list[dict[str, float]]
  step: int
  finished: bool
  model: Any


def check_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
  """Checks every stage-2 config value before any compute.

  Raises:
    ValueError: one sentence naming the bad value and the fix.
  """
  from eriep_jax import models  # pylint: disable=g-import-not-at-top
  num_devices = jax.device_count() if num_devices is None else num_devices
  if config.method not in step_lib.METHODS:
    raise ValueError(f"unknown method {config.method!r}; use one of {step_lib.METHODS}.")
  if config.reference not in step_lib.REFERENCES:
    raise ValueError(f"unknown reference {config.reference!r}; use one of "
                     f"{step_lib.REFERENCES}.")
  if config.reduction not in _REDUCTIONS:
    raise ValueError(f"unknown reduction {config.reduction!r}; use one of {_REDUCTIONS}.")
  if not (isinstance(config.alpha, (int, float)) and math.isfinite(config.alpha)
          and config.alpha >= 0):
    raise ValueError(f"alpha={config.alpha!r} must be a finite number >= 0 (Eq. 9); e.g. 0.5.")
  if isinstance(config.sync_freq, bool) or not isinstance(config.sync_freq, int) \
      or config.sync_freq < 1:
    raise ValueError(f"sync_freq={config.sync_freq!r} must be an int >= 1; e.g. 100.")
  if config.model.name.lower() not in models.list_models():
    raise ValueError(f"unknown model {config.model.name!r}; use one of {models.list_models()}.")
  if config.data.source not in _SOURCES:
    raise ValueError(f"unknown data.source {config.data.source!r}; use one of {_SOURCES}.")
  if config.data.source == "tfds":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    if config.data.name not in tfds.list_builders():
      raise ValueError(f"unknown TFDS dataset {config.data.name!r}; use a TFDS name such as "
                       "'cifar10', or data.source='folder' with data.root.")
  for name, value in (("batch_size", config.batch_size),
                      ("eval_batch_size", config.eval_batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r} must be a positive int.")
    if value % num_devices:
      raise ValueError(f"{name} {value} is not divisible by {num_devices} devices; use a "
                       f"multiple of {num_devices}, e.g. {num_devices * max(1, value // num_devices)}.")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ValueError(f"num_epochs={config.num_epochs} and num_train_steps="
                     f"{config.num_train_steps}: set one of them > 0.")
  if config.optimizer.name not in _OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {config.optimizer.name!r}; use one of "
                     f"{_OPTIMIZERS}.")
  if config.optimizer.schedule not in _SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {config.optimizer.schedule!r}; use one of "
                     f"{_SCHEDULES}.")
  if not config.optimizer.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate={config.optimizer.learning_rate!r} must be > 0.")
  for name in ("log_every_steps", "checkpoint_every_steps"):
    if config[name] < 1:
      raise ValueError(f"{name}={config[name]!r} must be >= 1.")
  methods = tuple(config.get("compare_methods", ()) or ())
  for m in methods:
    if m not in step_lib.METHODS:
      raise ValueError(f"unknown method {m!r} in compare_methods; use names from "
                       f"{step_lib.METHODS}.")


def build_model(config: ml_collections.ConfigDict, num_classes: int, *,
                bn_axis_name: str | None = None):
  """The classifier from ``config.model`` (N and R share it)."""
  from eriep_jax import models  # pylint: disable=g-import-not-at-top
  options = {k: v for k, v in config.model.items() if k != "name"}
  if isinstance(options.get("mean"), list):
    options["mean"] = tuple(options["mean"])
  if isinstance(options.get("std"), list):
    options["std"] = tuple(options["std"])
  return models.get_model(config.model.name, num_classes, bn_axis_name=bn_axis_name, **options)


def _initial_policy(config, policy_workdir, key):
  """The stage-1 policy: ``resolve_policy``, reusing a finished search."""
  from eriep_jax.train import search  # pylint: disable=g-import-not-at-top
  searched = os.path.join(policy_workdir, "search")
  if config.policy.source == "search" and os.path.isdir(os.path.join(searched,
                                                                     search.CHECKPOINT_DIR)):
    return search.load_policy(searched, config)
  return search.resolve_policy(config, policy_workdir, key)


def _abstract_policy(config, key):
  from eriep_jax import policy  # pylint: disable=g-import-not-at-top
  return policy.init_policy(key, config.policy)


def replicate(tree: Any) -> Any:
  """Copies a host pytree to every local device, laid out as ``jax.pmap`` outputs are.

  ``flax.jax_utils.replicate`` names its mesh axis differently from pmap's
  outputs, which makes the second pmap call compile the step again.
  """
  devices = jax.local_devices()
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("batch",)),
                                        jax.sharding.PartitionSpec("batch"))
  return jax.tree.map(
      lambda x: jax.device_put(np.stack([np.asarray(x)] * len(devices)), sharding), tree)


def _unreplicate(tree):
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))


class _Stop:
  """Set by SIGTERM; the loop checkpoints and returns."""

  def __init__(self):
    self.requested = False

  def __call__(self, signum, frame):
    del frame
    logging.warning("signal %d received: saving a checkpoint and stopping.", signum)
    self.requested = True


def train(config: ml_collections.ConfigDict, workdir: str, *,
          policy_workdir: str | None = None,
          stop_after_steps: int | None = None,
          perturb_fn: Callable[..., jax.Array] | None = None) -> TrainResult:
  """Stage 2 (Algorithm 1, "TRAIN NETWORK") for one method, with resume.

  Args:
    config: the experiment config (checked with ``check_config`` first).
    workdir: checkpoints in ``workdir/checkpoints``, metrics in ``workdir``.
    policy_workdir: where a stage-1 search lives (default: ``workdir``).
    stop_after_steps: stop (and checkpoint) once this many steps are done in
      total, as a preemption would; the next call resumes.
    perturb_fn: replaces ``eriep_jax.policy.perturb`` (tests).

  Returns:
    A ``TrainResult``.

  Raises:
    ValueError: for a bad config or an incompatible workdir.
    FloatingPointError: on a non-finite loss; the last good checkpoint is kept.
  """
  from eriep_jax import data  # pylint: disable=g-import-not-at-top
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), config)
  checkpointer.check_compatible()   # before anything is written

  info = data.get_dataset_info(config)
  total_steps = state_lib.num_train_steps(config, data.steps_per_epoch(config))
  lr_fn = state_lib.learning_rate_schedule(config, total_steps)
  tx = state_lib.make_optimizer(config, total_steps)
  policy_tx = state_lib.make_policy_optimizer(config)
  model = build_model(config, info.num_classes)
  pmodel = build_model(config, info.num_classes, bn_axis_name="batch")

  base_key = jax.random.PRNGKey(config.seed)
  resuming = checkpointer.latest_step() is not None
  policy_key = jax.random.fold_in(base_key, 2)
  policy_params = (_abstract_policy(config, policy_key) if resuming else
                   _initial_policy(config, policy_workdir or workdir, policy_key))
  it = data.train_iterator(config, start_step=0) if not resuming else None
  image_shape = tuple(info.image_shape)
  state = state_lib.create_train_state(model, policy_params, base_key, image_shape=image_shape,
                                       tx=tx, policy_tx=policy_tx)
  start = 0
  if resuming:
    state, meta = checkpointer.restore(state)
    start = int(meta["data_position"])
    logging.info("resuming from step %d in %s", start, workdir)
    it = data.train_iterator(config, start_step=start)

  step_fn = step_lib.make_train_step(config, model=pmodel, tx=tx, policy_tx=policy_tx,
                                     learning_rate_fn=lr_fn, axis_name="batch",
                                     perturb_fn=perturb_fn)
  p_step = jax.pmap(step_fn, axis_name="batch", in_axes=(0, 0, None), donate_argnums=(0,))
  host_key = np.asarray(jax.device_get(state.key))
  rstate = replicate(state)
  del state

  is_main = jax.process_index() == 0
  writer = writers.create_writer(workdir, just_logging=not is_main)
  if start == 0:
    writer.write_hparams({k: str(v) for k, v in ckpt_lib._math_fields(config).items()})  # pylint: disable=protected-access
  stopper = _Stop()
  old_handler = None
  try:
    old_handler = signal.signal(signal.SIGTERM, stopper)
  except ValueError:   # not the main thread
    pass
  progress = None
  if config.progress and is_main:
    import tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=total_steps, initial=start, desc=f"train {config.method}",
                         unit="step", dynamic_ncols=True, mininterval=1.0)

  history, window = [], []
  last_good_ckpt = checkpointer.latest_step()
  step, pending = start, None
  t_log, n_log = time.perf_counter(), 0
  global_batch = config.batch_size

  def fetch(pending):
    s, m = pending
    m = {k: float(v) for k, v in jax.device_get(jax.tree.map(lambda x: x[0], m)).items()}
    if not (m.pop("finite") > 0 and math.isfinite(m["loss"])):
      raise FloatingPointError(
          f"non-finite loss or gradient at step {s} ({config.method}, loss={m['loss']}); "
          f"stopped without saving. The last good checkpoint (step {last_good_ckpt}) is kept "
          f"in {checkpointer.directory}; lower optimizer.learning_rate or alpha and rerun.")
    return s, m

  def save(step):
    nonlocal last_good_ckpt
    checkpointer.save(_unreplicate(rstate), step=step, data_position=step, force=True)
    last_good_ckpt = step

  finished = True
  try:
    while step < total_steps:
      if stopper.requested or (stop_after_steps is not None and step >= stop_after_steps):
        finished = False
        break
      batch = next(it)
      key = jax.random.fold_in(host_key, step)
      rstate, metrics = p_step(rstate, batch, key)
      step += 1
      if pending is not None:   # one step behind, so the host never stalls the device
        window.append(fetch(pending)[1])
      pending = (step, metrics)
      if progress is not None:
        progress.update(1)
      if step % config.log_every_steps == 0 or step == total_steps or \
          step % config.checkpoint_every_steps == 0:
        window.append(fetch(pending)[1])
        pending = None
      if step % config.log_every_steps == 0 or step == total_steps:
        dt = time.perf_counter() - t_log
        n = len(window) + n_log
        logged = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        logged["steps_per_sec"] = n / dt
        logged["images_per_sec"] = n * global_batch / dt
        writer.write_scalars(step, logged)
        history.append(dict(step=step, **logged))
        if progress is not None:
          progress.set_postfix(loss=f"{logged['loss']:.4f}", acc=f"{logged['accuracy']:.3f}")
        window, n_log, t_log = [], 0, time.perf_counter()
      if step % config.checkpoint_every_steps == 0 and step < total_steps:
        save(step)
    if pending is not None:
      window.append(fetch(pending)[1])
    if step > 0 and checkpointer.latest_step() != step:
      save(step)
  finally:
    writer.flush()
    if progress is not None:
      progress.close()
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)
    checkpointer.close()
  return TrainResult(state=_unreplicate(rstate), history=history, step=step,
                     finished=finished and step >= total_steps, model=model)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       policy_workdir: str | None = None) -> dict[str, Any]:
  """Trains one method, then evaluates it (``workdir/eval/results.json``)."""
  from eriep_jax import evaluate  # pylint: disable=g-import-not-at-top
  out = train(config, workdir, policy_workdir=policy_workdir)
  if not out.finished:
    logging.warning("training stopped at step %d before the end; rerun to resume.", out.step)
    return {"finished": False, "step": out.step}
  variables = {"params": out.state.params}
  if out.state.batch_stats:
    variables["batch_stats"] = out.state.batch_stats
  return evaluate.evaluate_and_write(config, workdir, model=out.model, variables=variables,
                                     step=out.step)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The main job: train and evaluate ``config.method`` or each of
  ``config.compare_methods`` (in ``workdir/<method>``), then print and write a
  comparison table (``workdir/comparison.{json,md}``).
  """
  from eriep_jax import evaluate  # pylint: disable=g-import-not-at-top
  check_config(config)
  methods = tuple(config.get("compare_methods", ()) or ())
  if not methods:
    return train_and_evaluate(config, workdir)
  results = {}
  for m in methods:
    sub = copy.deepcopy(config)
    with sub.unlocked():
      sub.method = m
      sub.compare_methods = ()
    results[m] = train_and_evaluate(sub, os.path.join(workdir, m), policy_workdir=workdir)
    if not results[m].get("finished", True):
      return results
  table = evaluate.write_comparison(config, workdir, results)
  print(table, flush=True)
  return results
