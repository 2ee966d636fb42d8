"""Losses for users' own loops: ERIEP's objective (Eq. 5-9), its reference sync, and the
comparison methods' objectives. Every loss takes logits, not models::

  loss, aux = eriep_jax.losses.eriep_loss(logits_n, logits_r, labels, alpha=0.5)

``eriep.py`` holds Eq. (9), the cross-entropy and ``sync_reference``; ``contrastive.py``
SupCon, UniCL and AugMix's JSD. Stage 1's WGAN-GP terms belong to stage 1:
``eriep_jax.search.losses``.
"""

from eriep_jax.losses.contrastive import JSD_MIXTURE_FLOOR, jsd_loss, supcon_loss, unicl_loss
from eriep_jax.losses.eriep import REDUCTIONS, cross_entropy, eriep_loss, sync_reference

__all__ = ["REDUCTIONS", "JSD_MIXTURE_FLOOR", "cross_entropy", "eriep_loss", "sync_reference",
           "supcon_loss", "unicl_loss", "jsd_loss"]
