"""ResNet-18/50/101 (He et al., 2016) with a CIFAR and an ImageNet stem.

Layer layout follows torchvision, so that parameter counts match its published
figures exactly (11,689,512 / 25,557,032 / 44,549,160 for 1000 classes with the
ImageNet stem): convs without bias, BatchNorm (scale and bias; running
statistics live in ``batch_stats``, not ``params``) after every conv, a 1x1
conv + BN projection shortcut where the shape changes, GAP and a Dense head
with bias.

* ``stem='cifar'`` (default): a 3x3 stride-1 conv, BN, ReLU, no max-pool, for
  32x32 inputs (last map 4x4).
* ``stem='imagenet'``: a 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool
  (last map 7x7 at 224x224).
* The bottleneck is v1.5: the stride sits on the 3x3 conv, not the first 1x1.

Padding is explicit and symmetric (as in PyTorch) rather than XLA's 'SAME'. BN
uses torchvision's momentum 0.1 (Flax momentum 0.9) and epsilon 1e-5; convs use
He-normal fan-out init. The features returned for Grad-CAM are the output of
the last residual stage (after its final ReLU).
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eriep_jax.models import _common

__all__ = ["ResNet", "RESNET_CONFIGS", "STEMS"]

# name -> (block type, blocks per stage)
RESNET_CONFIGS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
STEMS = ("cifar", "imagenet")


class _Block(nn.Module):
  """A basic (two 3x3) or v1.5 bottleneck (1x1, 3x3 with stride, 1x1 x4) block."""
  filters: int
  strides: int
  bottleneck: bool
  dtype: Any
  bn_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda c, k, s=1: nn.Conv(  # noqa: E731
        c, (k, k), strides=(s, s), padding=((k // 2, k // 2),) * 2, use_bias=False,
        dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_common.conv_kernel_init)
    norm = lambda: _common.batch_norm(train, dtype=self.dtype, axis_name=self.bn_axis_name)  # noqa: E731
    if self.bottleneck:
      out_ch = 4 * self.filters
      y = nn.relu(norm()(conv(self.filters, 1)(x)))
      y = nn.relu(norm()(conv(self.filters, 3, self.strides)(y)))  # v1.5: stride on the 3x3
      y = norm()(conv(out_ch, 1)(y))
    else:
      out_ch = self.filters
      y = nn.relu(norm()(conv(self.filters, 3, self.strides)(x)))
      y = norm()(conv(self.filters, 3)(y))
    if self.strides != 1 or x.shape[-1] != out_ch:
      x = norm()(conv(out_ch, 1, self.strides)(x))
    return nn.relu(x + y)


class _ResNetBody(nn.Module):
  stage_sizes: Sequence[int]
  bottleneck: bool
  stem: str
  width: float
  dtype: Any
  bn_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c0 = _common.scaled(64, self.width)
    k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
    x = nn.Conv(c0, (k, k), strides=(s, s), padding=((k // 2, k // 2),) * 2, use_bias=False,
                dtype=self.dtype, param_dtype=jnp.float32,
                kernel_init=_common.conv_kernel_init, name="stem_conv")(x)
    x = _common.batch_norm(train, dtype=self.dtype, axis_name=self.bn_axis_name,
                           name="stem_bn")(x)
    x = nn.relu(x)
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = _Block(_common.scaled(64 * 2 ** i, self.width), 2 if i > 0 and j == 0 else 1,
                   self.bottleneck, self.dtype, self.bn_axis_name,
                   name=f"stage{i + 1}_block{j + 1}")(x, train)
    return x


class _LinearHead(nn.Module):
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(x)


class ResNet(_common.ImageClassifier):
  """ResNet v1.5 classifier.

  Attributes:
    stage_sizes: residual blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    bottleneck: bottleneck (ResNet-50/101) instead of basic (ResNet-18) blocks.
    stem: 'cifar' (3x3 stride 1, no pool) or 'imagenet' (7x7 stride 2 + max-pool).
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  stem: str = "cifar"

  @property
  def min_size(self) -> int:
    return 1  # padded strided convs and pools never shrink a map below 1x1

  def setup(self):
    if self.stem not in STEMS:
      raise ValueError(f"stem={self.stem!r} is unknown; use one of {STEMS}.")
    self.backbone = _ResNetBody(tuple(self.stage_sizes), self.bottleneck, self.stem, self.width,
                                self.dtype, self.bn_axis_name)
    self.classifier = _LinearHead(self.num_classes, self.dtype)
