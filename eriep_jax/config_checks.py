"""Every config check, in one place: stage 2 (``check_config``) and stage 1 (``check_search_config``).

Each raises one ``ValueError`` sentence that names the bad value and the fix,
before any compute or any file is written.
"""

import math
from typing import Any

from absl import logging
import jax
import ml_collections

from eriep_jax import data
from eriep_jax import losses
from eriep_jax import models
from eriep_jax import policy as policy_lib
from eriep_jax.train import step as step_lib

__all__ = ["check_config", "check_search_config"]

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


def check_search_config(config: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Checks ``config.search`` before any compute.

  Args:
    config: the experiment config (with a ``search`` block).
    num_devices: number of local devices the batch is split over.

  Raises:
    ValueError: naming the bad value and the fix.
  """
  s = config.search
  if not s.eps >= 0:
    raise ValueError(f"config.search.eps must be >= 0, got {s.eps}; it weights the "
                     "classification loss in Eq. (3) (Faster AutoAugment uses 0.1).")
  if not s.lambda_gp >= 0:
    raise ValueError(f"config.search.lambda_gp must be >= 0, got {s.lambda_gp}; it weights "
                     "the gradient penalty (WGAN-GP uses 10).")
  if not s.learning_rate > 0:
    raise ValueError(f"config.search.learning_rate must be > 0, got {s.learning_rate}; "
                     "try 1e-3.")
  for name in ("b1", "b2"):
    value = s[name]
    if not 0 <= value < 1:
      raise ValueError(f"config.search.{name} must be in [0, 1), got {value}; Faster "
                       "AutoAugment uses betas (0, 0.999).")
  if not (isinstance(s.batch_size, int) and s.batch_size > 0
          and s.batch_size % (2 * num_devices) == 0):
    raise ValueError(f"config.search.batch_size {s.batch_size} must be a positive multiple of "
                     f"2 x {num_devices} devices = {2 * num_devices}, so that every device "
                     f"splits its share in halves; use e.g. {2 * num_devices * 64}.")
  if not (isinstance(s.num_examples, int) and s.num_examples >= s.batch_size):
    raise ValueError(f"config.search.num_examples must be an int >= search.batch_size "
                     f"({s.batch_size}), got {s.num_examples}; use 4000 for CIFAR-10.")
  if not (isinstance(s.num_epochs, (int, float)) and s.num_epochs > 0):
    raise ValueError(f"config.search.num_epochs must be > 0, got {s.num_epochs}; try 20.")
  if not (isinstance(s.critic_hidden, int) and s.critic_hidden > 0):
    raise ValueError(f"config.search.critic_hidden must be a positive int, got "
                     f"{s.critic_hidden}; try 128.")
  if s.get("num_steps", -1) == 0 or s.get("num_steps", -1) < -1:
    raise ValueError(f"config.search.num_steps must be -1 (use num_epochs) or > 0, got "
                     f"{s.num_steps}.")
  if s.get("norm", "layer") not in models.NORMS:
    raise ValueError(f"config.search.norm={s.get('norm')!r} is unknown; use one of "
                     f"{models.NORMS} ('layer' keeps the per-sample gradient penalty valid).")
  if s.get("gp_norm", "sample") not in losses.GP_NORMS:
    raise ValueError(f"config.search.gp_norm={s.get('gp_norm')!r} is unknown; use one of "
                     f"{losses.GP_NORMS}.")
  weight = s.get("classifier_weight", -1.0)
  if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
      not math.isfinite(weight) or (weight < 0 and weight != -1):
    raise ValueError(f"config.search.classifier_weight={weight!r} must be a number >= 0, or -1 "
                     "for eps (Faster AutoAugment's weight); e.g. 1.0.")
  count = s.get("num_heldout", 1000)
  if isinstance(count, bool) or not isinstance(count, int) or count < 0:
    raise ValueError(f"config.search.num_heldout={count!r} must be an int >= 0 (0: no "
                     "held-out check); e.g. 1000.")
  if s.get("heldout_split", "train") not in ("train", "test"):
    raise ValueError(f"config.search.heldout_split={s.get('heldout_split')!r} is unknown; use "
                     "'train' (the examples after the search's subset) or 'test'.")
  if not isinstance(s.get("control", False), bool):
    raise ValueError(f"config.search.control={s.get('control')!r} must be True or False.")
  if "policy" in config:
    # Unknown init / parameterization names, before any compute.
    policy_lib.PolicyConfig.from_config(config.policy)
