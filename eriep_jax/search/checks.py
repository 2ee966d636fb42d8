"""Stage 1's config check: ``config.search`` (and the policy's options) before any compute.

``check_search_config`` raises one ``ValueError`` sentence that names the bad value and the
fix. Stage 2's check is ``eriep_jax.train.checks``; ``eriep_jax.config_checks`` offers both.
"""

import math

import ml_collections

from eriep_jax import models
from eriep_jax import policy as policy_lib
from eriep_jax.search import losses

__all__ = ["check_search_config"]


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
