"""Stage 2's config check: every value ``train.loop.train`` reads, before any compute.

``check_config`` raises one ``ValueError`` sentence that names the bad value and the fix,
before any compute or any file is written. It sits beside the step whose methods it checks;
stage 1's check is ``eriep_jax.search.checks`` and ``eriep_jax.config_checks`` offers both.
"""

import math
from typing import Any

from absl import logging
import jax
import ml_collections

from eriep_jax import data
from eriep_jax import losses
from eriep_jax import models
from eriep_jax.train import step as step_lib

__all__ = ["check_config"]

_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("constant", "step")


def check_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
  """Checks every stage-2 config value before any compute.

  Raises:
    ValueError: one sentence naming the bad value and the fix.
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  if config.method not in step_lib.METHODS:
    raise ValueError(f"unknown method {config.method!r}; use one of {step_lib.METHODS}.")
  _check_baselines(config)
  if config.method == "oracle":
    std = config.get("oracle", {}).get("max_noise_std", 0.4)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < math.inf:
      raise ValueError(f"oracle.max_noise_std={std!r} must be a finite number >= 0; e.g. 0.4.")
  if config.reference not in step_lib.REFERENCES:
    raise ValueError(f"unknown reference {config.reference!r}; use one of "
                     f"{step_lib.REFERENCES}.")
  if config.reduction not in losses.REDUCTIONS:
    raise ValueError(f"unknown reduction {config.reduction!r}; use one of {losses.REDUCTIONS}.")
  if not (isinstance(config.alpha, (int, float)) and math.isfinite(config.alpha)
          and config.alpha >= 0):
    raise ValueError(f"alpha={config.alpha!r} must be a finite number >= 0 (Eq. 9); e.g. 0.5.")
  if isinstance(config.sync_freq, bool) or not isinstance(config.sync_freq, int) \
      or config.sync_freq < 1:
    raise ValueError(f"sync_freq={config.sync_freq!r} must be an int >= 1; e.g. 100.")
  if config.model.name.lower() not in models.list_models():
    raise ValueError(f"unknown model {config.model.name!r}; use one of {models.list_models()}.")
  # Every model option (width, dtype, ...), by building the module: cheap, no weights.
  options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.model.items()
             if k != "name"}
  models.get_model(config.model.name, 10, **options)
  data.check_data_config(config.data)
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
  source = config.policy.source
  if not isinstance(source, str) or not source:
    raise ValueError(f"config.policy.source must be 'init', 'search', 'random' or a path, got "
                     f"{source!r}.")
  if config.method == "augment" and config.policy.source == "init":
    if config.policy.get("init", "uniform") == "constant":
      logging.warning("method='augment' with policy.source='init' and policy.init='constant': "
                      "the hard policy applies each stage's first op (all W are 0), %s.",
                      config.policy.ops[0])
    else:
      logging.warning("method='augment' with policy.source='init': the hard policy is the "
                      "untrained, uniformly drawn initial policy.")


def _positive(name: str, value: Any, example: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or \
      not (math.isfinite(value) and value > 0):
    raise ValueError(f"{name}={value!r} must be a finite number > 0; e.g. {example}.")


def _check_baselines(config: ml_collections.ConfigDict) -> None:
  """supcon / unicl / jsd settings (config.supcon, config.contrastive, config.jsd)."""
  if config.method == "supcon":
    sup = config.supcon
    if sup.views not in step_lib.SUPCON_VIEWS:
      raise ValueError(f"unknown supcon.views {sup.views!r}; use one of {step_lib.SUPCON_VIEWS} "
                       "(SupContrast's augmentation, or two hard EPM draws).")
    if sup.stage not in step_lib.SUPCON_STAGES:
      raise ValueError(f"unknown supcon.stage {sup.stage!r}; use one of "
                       f"{step_lib.SUPCON_STAGES} (the experiment sets it; leave 'encoder').")
    _positive("supcon.temperature", sup.temperature, "0.1")
    _positive("supcon.base_temperature", sup.base_temperature, "0.07")
    if isinstance(sup.linear_epochs, bool) or not isinstance(sup.linear_epochs, int) or \
        sup.linear_epochs == 0 or sup.linear_epochs < -1:
      raise ValueError(f"supcon.linear_epochs={sup.linear_epochs!r} must be a positive int, or "
                       "-1 for num_epochs.")
  if config.method in ("supcon", "unicl"):
    c = config.contrastive
    if isinstance(c.proj_dim, bool) or not isinstance(c.proj_dim, int) or c.proj_dim < 1:
      raise ValueError(f"contrastive.proj_dim={c.proj_dim!r} must be a positive int, e.g. 128.")
    _positive("contrastive.logit_scale_init", c.logit_scale_init, "1/0.07")
  if config.method == "jsd":
    w = config.jsd.weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
      raise ValueError(f"jsd.weight={w!r} must be a finite number >= 0; AugMix uses 12.")
