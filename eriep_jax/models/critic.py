"""The stage-1 critic: one shared backbone with a classifier and a critic head.

Stage 1 of Algorithm 1 ("OPTIMIZE EPM", Eq. 3-4) needs an image classifier f
for the loss l and a Wasserstein critic D for d_theta. As in Faster AutoAugment
(Hataya et al., 2020) both share one backbone, taken from the model registry::

  backbone = get_model("cnn8", num_classes, width=0.5, batch_norm=False)
  critic = SearchCritic(backbone=backbone, num_classes=10, hidden=128)
  logits, scores = critic.apply(variables, images)   # (B, classes), (B,)

The backbone's last conv map (B, h, w, c) is global-average pooled; a linear
head gives the class logits and a two-layer MLP (Dense(hidden) -> ReLU ->
Dense(1)) gives the critic score. The backbone's own classifier layers are not
used (their parameters exist but get zero gradient), so that the classifier of
Eq. (4) is the linear head the issue specifies, whatever the backbone.

Images are float32 in [0, 1], NHWC (the backbone normalises them).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["SearchCritic"]


class SearchCritic(nn.Module):
  """Shared-backbone classifier f and WGAN critic D for stage 1 (Eq. 3-4).

  Attributes:
    backbone: a registry model whose ``__call__(x, train=..., return_features=True)``
      returns ``(logits, features)`` with features of shape (B, h, w, c).
    num_classes: number of classes of the linear classifier head.
    hidden: width of the critic MLP's hidden layer.
  """
  backbone: nn.Module
  num_classes: int
  hidden: int = 128

  @nn.compact
  def __call__(self, images: jax.typing.ArrayLike, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Classifies and scores a batch.

    Args:
      images: float images in [0, 1], shape (B, H, W, C).
      train: passed to the backbone (dropout / batch-norm mode).

    Returns:
      ``(logits, scores)``: float32 arrays of shape (B, num_classes) and (B,).

    Raises:
      ValueError: if images are not rank 4.
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
      raise ValueError(f"images must have shape (batch, height, width, channels), got "
                       f"{images.shape}; add a batch axis with images[None].")
    _, features = self.backbone(images, train=train, return_features=True)
    if features.ndim == 4:
      pooled = features.mean(axis=(1, 2))
    elif features.ndim == 2:
      pooled = features
    else:
      raise ValueError(f"backbone features must have shape (B, h, w, c) or (B, c), got "
                       f"{features.shape}; use a backbone from eriep_jax.models.")
    pooled = pooled.astype(jnp.float32)
    logits = nn.Dense(self.num_classes, name="classifier")(pooled)
    hidden = nn.relu(nn.Dense(self.hidden, name="critic_hidden")(pooled))
    scores = nn.Dense(1, name="critic_out")(hidden)[:, 0]
    return logits, scores
