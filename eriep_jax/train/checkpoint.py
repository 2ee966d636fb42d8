"""Orbax checkpoints of the whole stage-2 run, with a config fingerprint.

A checkpoint holds the unreplicated ``TrainState`` (N, R, the policy, both
optimizer states, the step and the base key) and a JSON record (``meta``)
with:

- ``format``: ``FORMAT``; a checkpoint without it comes from another library
  version and is refused with one sentence;
- ``data_position`` (the number of batches consumed, which
  ``train_iterator(start_step=)`` resumes from) and ``step``;
- ``fingerprint`` and ``math_fields`` (the fields that change the weights);
- ``config``: the run's whole config, so that ``eriep_jax.restore(workdir)``
  needs none from the caller;
- ``policy``: the policy's static fields (ops, L, K, temperatures), so that a
  run that started from a searched or JSON policy resumes with its own shape
  and op order, whatever ``config.policy`` says;
- ``num_classes`` and ``image_shape``, and whatever else the caller adds.

A workdir whose checkpoint was written by a different model or config is
refused before anything is written.
"""

import hashlib
import json
import os
import shutil
from typing import Any

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

__all__ = ["CheckpointMismatchError", "config_fingerprint", "math_fields", "Checkpointer",
           "FORMAT"]

FORMAT = "eriep_jax.train_checkpoint/v2"

# Fields that do not change the trained weights: they may differ on resume.
_NON_MATH_FIELDS = ("log_every_steps", "checkpoint_every_steps", "progress", "eval",
                    "eval_batch_size", "data.data_dir", "data.root", "data.archive",
                    "compare_methods", "seeds", "write_plots", "preemption_check_every_steps")


class CheckpointMismatchError(ValueError):
  """The workdir's checkpoint comes from a different model or config."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, name + "."))
    else:
      out[name] = list(v) if isinstance(v, tuple) else v
  return out


def math_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The flattened config fields that change the trained weights, sorted by name."""
  flat = _flatten(config.to_dict())
  return {k: v for k, v in sorted(flat.items())
          if not any(k == f or k.startswith(f + ".") for f in _NON_MATH_FIELDS)}


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
  """A sha256 over every config field that changes the trained weights."""
  blob = json.dumps(math_fields(config), sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpointer:
  """Saves and restores the train state of one workdir with orbax.

  Args:
    directory: ``<workdir>/checkpoints``.
    config: the run's config; its fingerprint is stored and checked. None
      opens a checkpoint read-only, whatever config wrote it (``restore``).
    max_to_keep: how many checkpoints to keep.
  """

  def __init__(self, directory: str, config: ml_collections.ConfigDict | None, *,
               max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.config = config
    self.fingerprint = None if config is None else config_fingerprint(config)
    self._fell_back = None
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                             create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def set_aside(self, step: int, error: Exception) -> None:
    """Moves an unreadable checkpoint out of the way (kept, renamed), with a warning."""
    src = os.path.join(self.directory, str(step))
    dst = f"{src}.unreadable"
    steps = [s for s in self._manager.all_steps() if s != step]
    logging.warning("checkpoint %s is unreadable (%s: %.200s); it is kept as %s and the run "
                    "falls back to the previous good checkpoint (%s).", src,
                    type(error).__name__, error, dst,
                    f"step {max(steps)}" if steps else "none: the run starts afresh")
    if os.path.exists(dst):
      shutil.rmtree(dst)
    os.replace(src, dst)
    self._manager.reload()

  def read_meta(self, step: int | None = None) -> dict[str, Any] | None:
    """The JSON record of checkpoint ``step`` (default: the latest), or None.

    Raises:
      CheckpointMismatchError: for a checkpoint of another library version.
    """
    if step is None:
      step = self.latest_step()
      if step is None:
        return None
      try:
        return self.read_meta(step)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        self._fall_back(step, e)   # a torn record (killed during a save)
        return self.read_meta()
    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    meta = meta["meta"]
    if meta.get("format") != FORMAT:
      raise CheckpointMismatchError(
          f"the checkpoint at step {step} in {self.directory} was written by another version "
          f"of eriep_jax (format {meta.get('format')!r}, expected {FORMAT!r}); retrain in a "
          "fresh --workdir or use the version that wrote it. Nothing was overwritten.")
    return meta

  def check_compatible(self, meta: dict[str, Any] | None = None) -> None:
    """Refuses a workdir whose latest checkpoint has another fingerprint.

    Args:
      meta: the latest checkpoint's record, if already read.

    Raises:
      CheckpointMismatchError: naming the fields that differ.
    """
    meta = self.read_meta() if meta is None else meta
    if meta is None or self.config is None or meta.get("fingerprint") == self.fingerprint:
      return
    old = meta.get("math_fields", {})
    new = json.loads(json.dumps(math_fields(self.config), default=str))
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])
    raise CheckpointMismatchError(
        f"workdir {os.path.dirname(self.directory)} holds a checkpoint (step {meta['step']}) "
        f"from a different model or config ({shown}); use a fresh --workdir or the original "
        "config. Nothing was overwritten.")

  def save(self, state: Any, *, step: int, data_position: int, force: bool = False,
           extra: dict[str, Any] | None = None) -> None:
    """Saves an unreplicated, finite ``state`` (blocks until written).

    Args:
      state: the host ``TrainState``.
      step: the step number (the checkpoint's name).
      data_position: batches consumed so far.
      force: overwrite a checkpoint of the same step.
      extra: more JSON-able fields for the record (``policy``, ``num_classes``, ...).
    """
    meta = dict(extra or {})
    meta.update({"format": FORMAT, "fingerprint": self.fingerprint, "step": int(step),
                 "data_position": int(data_position),
                 "math_fields": json.loads(json.dumps(math_fields(self.config), default=str)),
                 "config": json.loads(self.config.to_json_best_effort())})
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)
    self._manager.wait_until_finished()

  def restore(self, abstract_state: Any, *, meta: dict[str, Any] | None = None,
              check: bool = True) -> tuple[Any, dict[str, Any]] | None:
    """Restores the latest checkpoint into ``abstract_state``'s structure.

    Args:
      abstract_state: a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
        ``jax.eval_shape``); leaves without a sharding are put on the first
        local device.
      meta: the latest record, if already read (it is not read again).
      check: refuse a checkpoint from another config (``check_compatible``).

    Returns:
      ``(state, meta)`` or None when the workdir has no checkpoint. A latest
      checkpoint that cannot be read (a process killed while writing it) is
      set aside with a warning naming it, and the previous one is restored:
      ``meta`` is then that checkpoint's record.
    """
    step = self.latest_step()
    if step is None:
      return None
    meta = self.read_meta(step) if meta is None else meta
    if check:
      self.check_compatible(meta)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target(x):
      x = ocp.tree.to_shape_dtype_struct(x) if not isinstance(x, jax.ShapeDtypeStruct) else x
      if getattr(x, "sharding", None) is None:
        x = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
      return x

    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(jax.tree.map(target, abstract_state))))
    except Exception as e:  # pylint: disable=broad-except
      self._fall_back(step, e)
      return self.restore(abstract_state, check=check)
    return out["state"], meta

  def _fall_back(self, step: int, error: Exception) -> None:
    # Only the latest checkpoint can be torn by a kill; a second unreadable one
    # means something else is wrong, and nothing more is moved.
    if self._fell_back:
      raise ValueError(f"checkpoints {self._fell_back} and {step} in {self.directory} are both "
                       f"unreadable ({type(error).__name__}: {error}); check the disk and the "
                       "library version. Nothing more was moved.") from error
    self._fell_back = step
    self.set_aside(step, error)

  def close(self) -> None:
    self._manager.close()
