"""Opening a trained run from its folder alone (``eriep_jax.restore``), and finding runs.

``restore(workdir)`` rebuilds the model, the variables, the policy, the config and the
step from the checkpoint's record, with no real initialisation; ``trained_runs_below``
lists the folders under a workdir that hold this library's checkpoints, and
``has_checkpoint`` is the one test of whether a run folder holds one.
"""

import dataclasses
import functools
import os
from typing import Any

import jax
import ml_collections

from eriep_jax import policy as policy_lib
from eriep_jax.train import checkpoint as ckpt_lib
from eriep_jax.train import loop
from eriep_jax.train import state as state_lib

__all__ = ["Run", "restore", "trained_runs_below", "has_checkpoint", "RUN_SEARCH_DEPTH"]


RUN_SEARCH_DEPTH = 4   # run folders sit at most this deep below a workdir (depth_*/v/seed_k/encoder)


@dataclasses.dataclass
class Run:
  """A trained run, opened by :func:`restore`.

  Attributes:
    model: the classifier (Flax module, inference with ``train=False``).
    variables: N's ``{'params', 'batch_stats'?}``.
    policy: the EPM's :class:`~eriep_jax.policy.PolicyParams` at that step.
    config: the run's whole config, as trained.
    step: the checkpoint's step.
    workdir: the run's workdir.
    state: the whole ``TrainState`` (R, optimizer states, key).
  """
  model: Any
  variables: dict[str, Any]
  policy: policy_lib.PolicyParams
  config: ml_collections.ConfigDict
  step: int
  workdir: str
  state: Any


def restore(workdir: str) -> Run:
  """Opens a trained run from its workdir alone: model, variables, policy, config, step.

  The checkpoint's record holds the whole config and the policy's static
  fields; the restore target is built with ``jax.eval_shape`` (no real
  initialisation).

  Raises:
    FileNotFoundError: the workdir does not exist.
    ValueError: it has no checkpoint (the sentence lists the trained runs
      below it, if any), or one from another library version.
  """
  workdir = str(workdir)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir!r} does not exist; pass the --workdir of a "
                            "trained run.")
  ckdir = os.path.join(workdir, "checkpoints")
  checkpointer = ckpt_lib.Checkpointer(ckdir, None) if os.path.isdir(ckdir) else None
  try:
    if checkpointer is None or checkpointer.latest_step() is None:
      below = trained_runs_below(workdir)
      hint = (f"; it holds the trained runs {below[:8]}, restore one of those" if below else
              "; train it first with python launch.py --config=... --workdir=" + workdir)
      raise ValueError(f"workdir {workdir!r} has no checkpoint{hint}.")
    meta = checkpointer.read_meta()
    config = ml_collections.ConfigDict(meta["config"])
    model = loop.build_model(config, int(meta["num_classes"]))
    tx = state_lib.make_optimizer(config, int(meta.get("total_steps", 1)))
    policy_tx = state_lib.make_policy_optimizer(config)
    abstract = jax.eval_shape(functools.partial(
        state_lib.create_train_state, model, image_shape=tuple(meta["image_shape"]), tx=tx,
        policy_tx=policy_tx), loop.abstract_policy(meta["policy"]),
        jax.random.key_data(jax.random.key(0)))
    state, meta = checkpointer.restore(abstract, meta=meta, check=False)
  finally:
    if checkpointer is not None:
      checkpointer.close()
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return Run(model=model, variables=variables, policy=state.policy_params, config=config,
             step=int(meta["step"]), workdir=workdir, state=state)


def trained_runs_below(workdir: str, max_depth: int = RUN_SEARCH_DEPTH) -> list[str]:
  """Folders at most ``max_depth`` levels below ``workdir`` that hold this library's checkpoints.

  A run folder has ``checkpoints/<step>/meta`` (``train.checkpoint``); other
  ``checkpoints`` folders (orbax's own tests in site-packages, say) are not
  runs. The walk never goes deeper than ``max_depth``, so a large folder such
  as the system's temporary one is not read whole.
  """
  found = []
  top = os.path.abspath(workdir)
  for root, dirs, _ in os.walk(top):
    depth = 0 if root == top else os.path.relpath(root, top).count(os.sep) + 1
    if "checkpoints" in dirs and _is_run_checkpoints(os.path.join(root, "checkpoints")):
      found.append(os.path.relpath(root, top))
    dirs[:] = [] if depth >= max_depth else sorted(
        d for d in dirs if d != "checkpoints" and not d.startswith("."))
  return sorted(found)


def _is_run_checkpoints(ckdir: str) -> bool:
  try:
    names = os.listdir(ckdir)
  except OSError:
    return False
  return any(n.isdigit() and os.path.exists(os.path.join(ckdir, n, "meta")) for n in names)


def has_checkpoint(rundir: str) -> bool:
  """Whether ``rundir`` holds a checkpoint of this library (the one such check; it closes its
  Checkpointer)."""
  ckdir = os.path.join(rundir, "checkpoints")
  if not os.path.isdir(ckdir):
    return False
  checkpointer = ckpt_lib.Checkpointer(ckdir, None)
  try:
    return checkpointer.latest_step() is not None
  finally:
    checkpointer.close()
