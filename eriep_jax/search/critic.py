"""The stage-1 critic: f and D on one registry backbone (``models.critic.SearchCritic``).

``build_critic`` builds it from ``config.search``; ``critic_apply`` runs it in
train or inference mode; ``backbone_options`` are the ``config.model``
options (normalisation, dtype) that the critic's backbone shares with N.
"""

from typing import Any

import ml_collections

from eriep_jax import models
from eriep_jax.models.critic import SearchCritic

__all__ = ["build_critic", "critic_apply", "backbone_options"]


def critic_apply(critic_module, variables, images, *, train: bool):
  """The critic on ``images``: (logits, scores, new batch statistics or None)."""
  if train and "batch_stats" in variables:
    (logits, scores), updates = critic_module.apply(variables, images, train=True,
                                                    mutable=["batch_stats"])
    return logits, scores, updates["batch_stats"]
  logits, scores = critic_module.apply(variables, images, train=False)
  return logits, scores, None


def backbone_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``config.model`` options the critic's backbone shares with N (normalisation, dtype)."""
  options = {k: v for k, v in config.model.items() if k not in ("name", "width", "batch_norm", "norm")}
  for k in ("mean", "std"):
    if isinstance(options.get(k), list):
      options[k] = tuple(options[k])
  return options


def build_critic(config: ml_collections.ConfigDict, num_classes: int, **model_options):
  """The shared-backbone classifier f and critic D from ``config.search``."""
  s = config.search
  backbone = models.get_model(s.backbone, num_classes, width=s.width, norm=s.norm,
                              **model_options)
  return SearchCritic(backbone=backbone, num_classes=num_classes, hidden=s.critic_hidden)
