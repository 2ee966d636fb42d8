"""The stage-2 training loop: pmap steps, logging, orbax checkpoints, resume.

Entry points (``eriep_jax.experiment`` drives them)::

  out = train(config, workdir)                   # one method, returns state and history
  checks.check_config(config)             # every bad value, before compute

A rerun with the same workdir resumes from the latest checkpoint (state, data
position and key), and reproduces the straight run exactly. The policy's
shape and op order come from the checkpoint, not from ``config.policy``. A
checkpoint from a different model or config is refused. SIGTERM (cluster
preemption) saves a checkpoint and returns; with several processes they agree
on the step to stop at first (``preemption_check_every_steps``).

Keys: ``jax.random.key(config.seed)`` is the root (stored in the state); step
t uses ``fold_in(purpose_key(root, 'steps'), t)`` and N's initial weights the
``'init'`` purpose key (``eriep_jax.rng``).

Every logged window is also appended to ``<workdir>/history.jsonl`` (trimmed
to the checkpoint's step on resume), so the means over the whole run survive
interruptions.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from eriep_jax import data
from eriep_jax import models
from eriep_jax import parallel
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax import writers
from eriep_jax.models import contrastive
from eriep_jax.policy import files as policy_files
from eriep_jax.train import checkpoint as ckpt_lib
from eriep_jax.train import checks
from eriep_jax.train import state as state_lib
from eriep_jax.train import step as step_lib

__all__ = ["build_model", "train", "TrainResult", "PreemptionFlag", "abstract_policy",
           "policy_meta", "read_history", "HISTORY_FILE"]

HISTORY_FILE = "history.jsonl"


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
    wall_time_s: training seconds over all sessions of the run (resumes added up).
  """
  state: Any
  history: list[dict[str, float]]
  step: int
  finished: bool
  model: Any
  wall_time_s: float = 0.0


def build_model(config: ml_collections.ConfigDict, num_classes: int, *,
                bn_axis_name: str | None = None):
  """The classifier from ``config.model`` (N and R share it).

  For ``method='supcon'`` or ``'unicl'`` it is the registry model wrapped in
  ``eriep_jax.models.contrastive.ContrastiveNet`` (projection head and the
  method's classifier, ``config.contrastive``).
  """
  options = {k: v for k, v in config.model.items() if k != "name"}
  if isinstance(options.get("mean"), list):
    options["mean"] = tuple(options["mean"])
  if isinstance(options.get("std"), list):
    options["std"] = tuple(options["std"])
  base = models.get_model(config.model.name, num_classes, bn_axis_name=bn_axis_name, **options)
  if config.method in contrastive.KINDS:   # supcon / unicl: projection + their classifier
    c = config.get("contrastive", {})
    return contrastive.wrap(base, num_classes, config.method, **dict(c))
  return base


def policy_meta(params: policy_lib.PolicyParams) -> dict[str, Any]:
  """The policy's static fields, as stored in a checkpoint's record."""
  return {"ops": list(params.ops), "num_subpolicies": int(params.num_subpolicies),
          "num_stages": int(params.num_stages),
          "selection_temperature": float(params.selection_temperature),
          "bernoulli_temperature": float(params.bernoulli_temperature),
          "parameterization": params.parameterization}


def abstract_policy(meta: dict[str, Any]) -> policy_lib.PolicyParams:
  """A zero policy of the shape, op order and temperatures that ``policy_meta`` recorded."""
  shape = (int(meta["num_subpolicies"]), int(meta["num_stages"]), len(meta["ops"]))
  zeros = jnp.zeros(shape, jnp.float32)
  return policy_lib.PolicyParams(
      magnitude=zeros, probability=zeros, weight=zeros, ops=tuple(meta["ops"]),
      selection_temperature=float(meta["selection_temperature"]),
      bernoulli_temperature=float(meta["bernoulli_temperature"]),
      # Runs recorded before the parameterization was stored used logits.
      parameterization=meta.get("parameterization", "sigmoid"))


def read_history(path: str, upto: int) -> list[dict[str, float]]:
  """The logged windows of ``path`` with step <= ``upto`` (a torn last line is dropped)."""
  out = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          entry = json.loads(line)
        except json.JSONDecodeError:
          break
        if entry.get("step", upto + 1) <= upto:
          out.append(entry)
  return out


class _WindowMetrics:
  """The step metrics of one logging window: kept on the device, fetched once, averaged.

  Each step's metrics stay on the device until the window is logged or a checkpoint is
  due; then all of them come to the host in one transfer (`drain`), every step's
  ``finite`` flag is checked, and the values are summed. Fetching and averaging on the
  host per step (CLU's ``metrics.Average``, one small device computation per metric and
  step) cost more than a cnn8 step itself on a GPU.
  """

  def __init__(self):
    self.pending = []   # (step, device metrics) not fetched yet
    self.sums, self.count = {}, 0

  def add(self, step: int, metrics) -> None:
    self.pending.append((step, metrics))

  def drain(self, on_bad_step: Callable[[int, dict], None]) -> None:
    """Fetches the pending steps; calls ``on_bad_step`` at the first non-finite one."""
    if not self.pending:
      return
    host = jax.device_get([m for _, m in self.pending])
    steps = [s for s, _ in self.pending]
    self.pending = []
    for s, m in zip(steps, host):
      m = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}
      if not (m.pop("finite") > 0 and math.isfinite(m["loss"])):
        on_bad_step(s, m)
      for k, v in m.items():
        self.sums[k] = self.sums.get(k, 0.0) + v
      self.count += 1

  def compute(self) -> dict[str, float]:
    """The window's means; the window starts again empty."""
    out = {k: v / self.count for k, v in self.sums.items()}
    self.sums, self.count = {}, 0
    return out


class _StepRate:
  """Writes steps_per_sec every ``every`` steps and logs the time left (no TensorFlow needed)."""

  def __init__(self, writer, total_steps: int, every: int):
    self._writer, self._total, self._every = writer, int(total_steps), max(1, int(every))
    self._last_step = self._last_time = None

  def __call__(self, step: int) -> None:
    now = time.perf_counter()
    if self._last_step is None:
      self._last_step, self._last_time = step, now
      return
    if step % self._every and step != self._total:
      return
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._writer.write_scalars(step, {"steps_per_sec": rate})
    logging.info("step %d of %d, %.2f steps/s, %.1f min left", step, self._total, rate,
                 (self._total - step) / max(rate, 1e-9) / 60)
    self._last_step, self._last_time = step, now


class PreemptionFlag:
  """Set by SIGTERM (cluster preemption); the loop checkpoints and returns.

  Public so that tests (and users with another preemption signal) can replace it.
  """

  def __init__(self):
    self.requested = False

  def __call__(self, signum, frame):
    del frame
    logging.warning("signal %d received: saving a checkpoint and stopping.", signum)
    self.requested = True


def train(config: ml_collections.ConfigDict, workdir: str, *,
          initial_policy: policy_lib.PolicyParams | None = None,
          stop_after_steps: int | None = None,
          perturb_fn: Callable[..., jax.Array] | None = None,
          initial_variables: dict[str, Any] | None = None,
          oracle_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None) -> TrainResult:
  """Stage 2 (Algorithm 1, "TRAIN NETWORK") for one method, with resume.

  Args:
    config: the experiment config (checked with ``check_config`` first).
    workdir: checkpoints in ``workdir/checkpoints``, metrics in ``workdir``.
    initial_policy: the policy stage 2 starts from (a searched, random or
      loaded one; ``eriep_jax.experiment`` resolves ``config.policy.source``).
      None: ``init_policy(config.policy)`` for ``source='init'`` or the policy
      loaded from a path. Ignored on resume: the checkpoint has the policy.
    stop_after_steps: stop (and checkpoint) once this many steps are done in
      total, as a preemption would; the next call resumes.
    perturb_fn: replaces ``eriep_jax.policy.perturb`` (tests).
    initial_variables: N's starting ``{'params', 'batch_stats'}`` instead of a
      fresh initialisation (supcon's linear stage starts from its encoder);
      same structure as the model's. Ignored on resume.
    oracle_fn: the ``oracle`` method's perturbation, ``fn(images, key)``
      (``eriep_jax.evaluate.perturbations.oracle``, passed by the experiment).

  Returns:
    A ``TrainResult``.

  Raises:
    ValueError: for a bad config or an incompatible workdir.
    FloatingPointError: on a non-finite loss; the last good checkpoint is kept.
  """
  checks.check_config(config)
  if config.method == "oracle" and oracle_fn is None:
    raise ValueError("method 'oracle' needs oracle_fn=eriep_jax.evaluate.perturbations.oracle "
                     "(eriep_jax.experiment passes it); pass it to train(...).")
  os.makedirs(workdir, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), config)
  meta = checkpointer.read_meta()
  checkpointer.check_compatible(meta)   # before anything is written
  resuming = meta is not None

  info = data.get_dataset_info(config)
  total_steps = state_lib.num_train_steps(config, data.steps_per_epoch(config))
  lr_fn = state_lib.learning_rate_schedule(config, total_steps)
  tx = state_lib.make_optimizer(config, total_steps)
  policy_tx = state_lib.make_policy_optimizer(config)
  model = build_model(config, info.num_classes)
  pmodel = build_model(config, info.num_classes, bn_axis_name="batch")

  root = jax.random.key(config.seed)
  steps_key = rng.purpose_key(root, "steps")
  image_shape = tuple(info.image_shape)
  if resuming:
    if "policy" not in meta:
      raise ckpt_lib.CheckpointMismatchError(
          f"the checkpoint in {checkpointer.directory} records no policy shape; retrain in a "
          "fresh --workdir. Nothing was overwritten.")
    abstract = jax.eval_shape(functools.partial(
        state_lib.create_train_state, model, image_shape=image_shape, tx=tx,
        policy_tx=policy_tx), abstract_policy(meta["policy"]), jax.random.key_data(root))
    state, meta = checkpointer.restore(abstract, meta=meta)
    start = int(meta["data_position"])
    print(f"resuming from step {start} in {workdir}", flush=True)
  else:
    if initial_policy is None:
      initial_policy = policy_files.resolve_source(config, rng.purpose_key(root, "policy"))
    state = state_lib.create_train_state(model, initial_policy, root, image_shape=image_shape,
                                         tx=tx, policy_tx=policy_tx)
    if initial_variables is not None:
      params = initial_variables["params"]
      stats = initial_variables.get("batch_stats", {}) or {}
      if jax.tree.structure(params) != jax.tree.structure(state.params) or \
          jax.tree.structure(stats) != jax.tree.structure(state.batch_stats):
        raise ValueError("initial_variables do not match the model of config.model "
                         f"({config.model.name}); pass the variables of the same model.")
      state = state.replace(params=params, batch_stats=stats, opt_state=tx.init(params),
                            ref_params=params, ref_batch_stats=stats)
    start = 0
  it = data.train_iterator(config, start_step=start)
  record = {"policy": policy_meta(state.policy_params), "num_classes": int(info.num_classes),
            "image_shape": list(image_shape), "total_steps": int(total_steps)}
  wall_before = float(meta.get("wall_time_s", 0.0)) if resuming else 0.0

  step_fn = step_lib.make_train_step(config, model=pmodel, tx=tx, policy_tx=policy_tx,
                                     learning_rate_fn=lr_fn, axis_name="batch",
                                     perturb_fn=perturb_fn, oracle_fn=oracle_fn)
  p_step = jax.pmap(step_fn, axis_name="batch", in_axes=(0, 0, None), donate_argnums=(0,))
  rstate = parallel.replicate(state)
  del state

  is_main = jax.process_index() == 0
  writer = writers.create_writer(workdir, just_logging=not is_main,
                                 tensorboard=data.uses_tensorflow(config.data))
  history_path = os.path.join(workdir, HISTORY_FILE)
  full_history = read_history(history_path, start) if resuming else []
  if is_main:
    with open(history_path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(h) + "\n" for h in full_history)
  if start == 0:
    writer.write_hparams({k: str(v) for k, v in ckpt_lib.math_fields(config).items()})
  stopper = PreemptionFlag()
  old_handler = None
  try:
    old_handler = signal.signal(signal.SIGTERM, stopper)
  except ValueError:   # not the main thread
    pass
  progress = None
  if config.progress and is_main:
    progress = tqdm.tqdm(total=total_steps, initial=start, desc=f"train {config.method}",
                         unit="step", dynamic_ncols=True, mininterval=1.0)

  history = []
  last_good_ckpt = checkpointer.latest_step()
  step = start
  t_start = time.perf_counter()
  report = _StepRate(writer, total_steps, config.log_every_steps)
  window = _WindowMetrics()
  check_every = int(config.get("preemption_check_every_steps", 10))

  def bad_step(s, m):
    raise FloatingPointError(
        f"non-finite loss or gradient at step {s} ({config.method}, loss={m['loss']}); "
        f"stopped without saving. The last good checkpoint (step {last_good_ckpt}) is kept "
        f"in {checkpointer.directory}; lower optimizer.learning_rate or alpha and rerun.")

  def save(step):
    nonlocal last_good_ckpt
    wall = wall_before + time.perf_counter() - t_start
    checkpointer.save(parallel.unreplicate(rstate), step=step, data_position=step, force=True,
                      extra=dict(record, wall_time_s=wall))
    last_good_ckpt = step

  def should_stop(step):
    if stop_after_steps is not None and step >= stop_after_steps:
      return True
    if jax.process_count() == 1:
      return stopper.requested
    # Every process must stop at the same step, or the others hang in the
    # step's collectives: they compare their flags every check_every steps.
    if step % check_every:
      return False
    flags = multihost_utils.process_allgather(np.int32(stopper.requested))
    return bool(np.max(flags))

  finished = True
  try:
    while step < total_steps:
      if should_stop(step):
        finished = False
        break
      batch = next(it)
      rstate, metrics = p_step(rstate, batch, jax.random.fold_in(steps_key, step))
      step += 1
      window.add(step, metrics)   # stays on the device until the window is logged
      if progress is not None:
        progress.update(1)
      logging_step = step % config.log_every_steps == 0 or step == total_steps
      if logging_step or step % config.checkpoint_every_steps == 0:
        window.drain(bad_step)   # every step checked before any save
      report(step)   # steps/s, to the writer
      if logging_step:
        logged = window.compute()
        writer.write_scalars(step, dict(logged))   # the writer is asynchronous: its own copy
        logged["elapsed_s"] = wall_before + time.perf_counter() - t_start
        history.append(dict(step=step, **logged))
        if is_main:
          with open(history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(history[-1]) + "\n")
        if progress is not None:
          progress.set_postfix(loss=f"{logged['loss']:.4f}",
                               acc=f"{logged.get('accuracy', float('nan')):.3f}")
      if step % config.checkpoint_every_steps == 0 and step < total_steps:
        save(step)
    window.drain(bad_step)
    if step > 0 and checkpointer.latest_step() != step:
      save(step)
  finally:
    writer.flush()
    if progress is not None:
      progress.close()
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)
    checkpointer.close()
  wall = wall_before + time.perf_counter() - t_start
  return TrainResult(state=parallel.unreplicate(rstate), history=history, step=step,
                     finished=finished and step >= total_steps, model=model, wall_time_s=wall)
