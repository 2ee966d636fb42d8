"""Pieces shared by every model family: input checks, normalisation, widths.

Input contract of every model in :mod:`eriep_jax.models`: float images in
[0, 1], NHWC, with 3 channels (any float dtype), checked while tracing by
:func:`eriep_jax.images.check_images`. With ``normalize=True`` the model subtracts
the per-channel mean and divides by the std (CIFAR-10 statistics by default) in
float32, then casts to the compute dtype.

Every classifier subclasses :class:`ImageClassifier`, which fixes the call
signature::

  logits = model.apply(variables, x, train=False)
  logits, feats = model.apply(variables, x, train=False, return_features=True)
  logits = model.apply(variables, feats, method='head')   # feats -> logits

``feats`` is the last convolutional feature map (B, h, w, c), the map Grad-CAM
(Fig. 4) weights. ``head`` maps it to the logits, so Grad-CAM gets d logits /
d feats from the one forward pass that produced ``feats``.
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eriep_jax import images as images_lib

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NUM_CHANNELS = 3

# torchvision's BatchNorm2d defaults: running <- 0.9 running + 0.1 batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# He (Kaiming) normal init, fan-out, as torchvision initialises VGG and ResNet convs.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

_ALLOWED_DTYPES = ("float32", "bfloat16", "float16")


def scaled(channels: int, width: float) -> int:
  """Channel count ``channels * width`` rounded, and never below 1."""
  return max(1, int(round(channels * width)))


def canonical_dtype(dtype: Any) -> jnp.dtype:
  """Parses a compute dtype given as a string or a jnp dtype.

  Raises:
    TypeError: if ``dtype`` is not float32, bfloat16 or float16.
  """
  try:
    parsed = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"dtype={dtype!r} is not a dtype; use one of {_ALLOWED_DTYPES}.") from e
  if parsed.name not in _ALLOWED_DTYPES:
    raise TypeError(f"dtype={dtype!r} is not a supported compute dtype; use one of "
                    f"{_ALLOWED_DTYPES}.")
  return parsed


def validate_stats(mean: Sequence[float], std: Sequence[float]) -> None:
  """Raises ValueError unless mean/std are 3 numbers each and std > 0."""
  if len(tuple(mean)) != NUM_CHANNELS or len(tuple(std)) != NUM_CHANNELS:
    raise ValueError(f"mean={mean!r} and std={std!r} must have {NUM_CHANNELS} entries each, one "
                     "per RGB channel.")
  if any(float(s) <= 0 for s in std):
    raise ValueError(f"std={std!r} has a non-positive entry; every std must be > 0.")


class ImageClassifier(nn.Module):
  """Base of every model: input checks, normalisation, and the output contract.

  A subclass builds ``self.backbone`` (images -> last conv map) and
  ``self.classifier`` (last conv map -> logits) in ``setup``, and sets
  ``min_size`` (its total downsampling, below which a map would vanish).

  Attributes:
    num_classes: number of output logits.
    width: channel multiplier of every layer (1.0 = the published model).
    dtype: compute dtype; parameters stay float32, logits are returned float32.
    normalize: subtract ``mean`` and divide by ``std`` at the input.
    mean: per-channel mean of the [0, 1] input images.
    std: per-channel std of the [0, 1] input images.
    bn_axis_name: pmap/shard_map axis over which BatchNorm averages batch
      statistics (``'batch'`` for cross-device BN); None = per-device statistics.
      With a name set, ``train=True`` calls must run inside ``jax.pmap(...,
      axis_name=...)``; eval calls and ``init(..., train=False)`` need no axis.
  """
  num_classes: int
  width: float = 1.0
  dtype: Any = jnp.float32
  normalize: bool = True
  mean: Sequence[float] = CIFAR10_MEAN
  std: Sequence[float] = CIFAR10_STD
  bn_axis_name: Optional[str] = None

  min_size = 1  # overridden by subclasses (class attribute, not a dataclass field)

  def _prepare(self, x: jax.typing.ArrayLike) -> jax.Array:
    # NHWC, 3 channels, any float dtype, at least min_size pixels; checked while tracing.
    x = images_lib.check_images(x, name="x", caller=type(self).__name__,
                                float32_only=False, channels=(NUM_CHANNELS,),
                                min_size=self.min_size, allow_empty_batch=True)
    x = x.astype(jnp.float32)
    if self.normalize:
      mean = jnp.asarray(self.mean, jnp.float32)
      std = jnp.asarray(self.std, jnp.float32)
      x = (x - mean) / std
    return x.astype(self.dtype)

  def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False,
               return_features: bool = False):
    """Classifies a batch of images.

    Args:
      x: float images in [0, 1], shape (B, H, W, 3).
      train: batch statistics of BatchNorm (and drop-path, where enabled) are
        used and updated only when True; pass ``mutable=['batch_stats']``.
      return_features: also return the last convolutional feature map.

    Returns:
      float32 logits (B, num_classes), or ``(logits, features)`` with the
      float32 features (B, h, w, c) when ``return_features`` is True.

    Raises:
      ValueError: on a wrong rank, channel count or too small an image.
      TypeError: on non-float images.
    """
    x = self._prepare(x)
    features = self.backbone(x, train=train)
    logits = self.classifier(features, train=train).astype(jnp.float32)
    if return_features:
      return logits, features.astype(jnp.float32)
    return logits

  def head(self, features: jax.typing.ArrayLike, *, train: bool = False) -> jax.Array:
    """Maps the last conv feature map (as returned by ``return_features``) to logits.

    Grad-CAM (Fig. 4) differentiates this map: ``jax.grad`` of
    ``model.apply(variables, feats, method='head')[:, c].sum()`` w.r.t. ``feats``
    gives d y_c / d A for the features A of the forward pass that returned them.

    Args:
      features: the (B, h, w, c) map returned with ``return_features=True``.
      train: unused by the current heads (none has dropout or BN); kept for symmetry.

    Returns:
      float32 logits (B, num_classes).

    Raises:
      ValueError: if ``features`` is not rank 4.
    """
    features = jnp.asarray(features)
    if features.ndim != 4:
      raise ValueError(f"head expects features of shape (batch, h, w, c), got "
                       f"{features.shape}; pass the map returned with return_features=True.")
    return self.classifier(features.astype(self.dtype), train=train).astype(jnp.float32)


def batch_norm(train: bool, *, dtype: Any, axis_name: Optional[str],
               name: Optional[str] = None, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  """BatchNorm with torchvision's momentum/epsilon and optional cross-device stats."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      dtype=dtype, axis_name=axis_name, name=name, scale_init=scale_init)


# Normalisation layers of the conv nets and the WideResNet (their ``norm`` option).
NORMS = ("batch", "layer", "group", "none")
# GroupNorm's group count (Wu & He, 2018), or the largest divisor of the channels below it.
GROUPS = 32


def norm_layer(kind: str, train: bool, *, dtype: Any, axis_name: Optional[str],
               name: Optional[str] = None):
  """The normalisation after a conv: BatchNorm, per-sample LayerNorm, or the identity.

  ``'layer'`` normalises each sample over (H, W, C) with a per-channel scale
  and bias, as the WGAN-GP critic of Gulrajani et al. (2017, Sec. 4) does in
  place of batch norm: each sample's output depends on that sample only, so a
  per-sample gradient penalty stays valid. ``'group'`` is GroupNorm with 32
  groups (fewer where the channels are fewer or not divisible), also per
  sample, and closer to batch norm in how fast a plain CNN trains.
  """
  if kind == "batch":
    return batch_norm(train, dtype=dtype, axis_name=axis_name, name=name)
  if kind == "layer":
    return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1, epsilon=BN_EPSILON,
                        dtype=dtype, param_dtype=jnp.float32, name=name)
  if kind == "group":
    def group_norm(x):
      channels = x.shape[-1]
      groups = math.gcd(GROUPS, channels)
      return nn.GroupNorm(num_groups=groups, epsilon=BN_EPSILON, dtype=dtype,
                          param_dtype=jnp.float32, name=name)(x)
    return group_norm
  if kind == "none":
    return lambda x: x
  raise ValueError(f"norm={kind!r} is unknown; use one of {NORMS}.")
