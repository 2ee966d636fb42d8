"""Orbax checkpoints of the whole stage-2 run, with a config fingerprint.

A checkpoint holds the unreplicated ``TrainState`` (N, R, the policy, both
optimizer states, the step and the base key) and a JSON record with the data
position (the number of batches consumed, which ``train_iterator(start_step=)``
resumes from), the config and its fingerprint. A workdir whose checkpoint was
written by a different model or config is refused before anything is written.
"""

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

__all__ = ["CheckpointMismatchError", "config_fingerprint", "Checkpointer"]

# Fields that do not change the trained weights: they may differ on resume.
_NON_MATH_FIELDS = ("log_every_steps", "checkpoint_every_steps", "progress", "eval",
                    "eval_batch_size", "data.data_dir", "data.root", "data.archive",
                    "compare_methods", "write_plots")


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


def _math_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = _flatten(config.to_dict())
  return {k: v for k, v in sorted(flat.items())
          if not any(k == f or k.startswith(f + ".") for f in _NON_MATH_FIELDS)}


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
  """A sha256 over every config field that changes the trained weights."""
  blob = json.dumps(_math_fields(config), sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpointer:
  """Saves and restores the train state of one workdir with orbax.

  Args:
    directory: ``<workdir>/checkpoints``.
    config: the run's config; its fingerprint is stored and checked.
    max_to_keep: how many checkpoints to keep.
  """

  def __init__(self, directory: str, config: ml_collections.ConfigDict, *,
               max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.config = config
    self.fingerprint = config_fingerprint(config)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                             create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def check_compatible(self) -> None:
    """Refuses a workdir whose latest checkpoint has another fingerprint.

    Raises:
      CheckpointMismatchError: naming the fields that differ.
    """
    step = self.latest_step()
    if step is None:
      return
    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    meta = meta["meta"]
    if meta.get("fingerprint") == self.fingerprint:
      return
    old = meta.get("math_fields", {})
    new = json.loads(json.dumps(_math_fields(self.config), default=str))
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])
    raise CheckpointMismatchError(
        f"workdir {os.path.dirname(self.directory)} holds a checkpoint (step {step}) from a "
        f"different model or config ({shown}); use a fresh --workdir or the original config. "
        "Nothing was overwritten.")

  def save(self, state: Any, *, step: int, data_position: int, force: bool = False) -> None:
    """Saves an unreplicated, finite ``state`` (blocks until written)."""
    meta = {"fingerprint": self.fingerprint, "step": int(step),
            "data_position": int(data_position),
            "math_fields": json.loads(json.dumps(_math_fields(self.config), default=str))}
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)
    self._manager.wait_until_finished()

  def restore(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores the latest checkpoint into ``abstract_state``'s structure.

    Returns:
      ``(state, meta)`` or None when the workdir has no checkpoint.
    """
    step = self.latest_step()
    if step is None:
      return None
    self.check_compatible()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def close(self) -> None:
    self._manager.close()
