"""WideResNet-40-2 (Zagoruyko & Komodakis, 2016), Faster AutoAugment's search critic.

Faster AutoAugment (Hataya et al., 2020) and its public reimplementation
search with a WideResNet-40-2 (homura's ``wrn40_2``) as the shared backbone of
the critic and the classifier. The layout is the paper's pre-activation
network: a 3x3 conv to 16 channels, then three groups of n = (depth - 4) / 6
blocks with 16k, 32k and 64k channels (k = widen factor; stride 2 at the first
block of groups 2 and 3), each block

    y = conv3x3(relu(norm(conv3x3(relu(norm(x)))))) + shortcut

with a 1x1 conv shortcut on the pre-activated input where the channel count or
the stride changes, then a final norm and ReLU, global average pooling and a
Dense head. Convs have no bias (homura's and the paper's code); weights use the
He-normal fan-out init of the other registry models. WRN-40-2 has 2,243,546
parameters for 10 classes (tested). Dropout is not used (Faster AutoAugment's
search sets none).

``norm='batch'`` (default, the published network) uses BatchNorm; ``'layer'``
a per-sample LayerNorm (see ``_common.norm_layer``). The features returned for
Grad-CAM are the map after the final norm and ReLU (B, 8, 8, 64k at 32x32).
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from eriep_jax.models import _common

__all__ = ["WideResNet", "WRN_CONFIGS"]

# name -> (depth, widen factor)
WRN_CONFIGS = {"wrn40_2": (40, 2)}


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: Optional[str] = None):
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=_common.conv_kernel_init, name=name)


class _WideBlock(nn.Module):
  """A pre-activation wide basic block."""
  features: int
  stride: int
  norm: str
  dtype: Any
  bn_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda: _common.norm_layer(self.norm, train, dtype=self.dtype,  # noqa: E731
                                      axis_name=self.bn_axis_name)
    act = nn.relu(norm()(x))
    y = _conv(self.features, 3, self.stride, self.dtype)(act)
    y = _conv(self.features, 3, 1, self.dtype)(nn.relu(norm()(y)))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = _conv(self.features, 1, self.stride, self.dtype, name="shortcut")(act)
    return x + y


class _WideBody(nn.Module):
  depth: int
  widen: int
  width: float
  norm: str
  dtype: Any
  bn_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n = (self.depth - 4) // 6
    x = _conv(_common.scaled(16, self.width), 3, 1, self.dtype)(x)
    for group, channels in enumerate((16, 32, 64)):
      for i in range(n):
        stride = 2 if group > 0 and i == 0 else 1
        x = _WideBlock(_common.scaled(channels * self.widen, self.width), stride, self.norm,
                       self.dtype, self.bn_axis_name)(x, train)
    x = _common.norm_layer(self.norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)(x)
    return nn.relu(x)


class _PoolHead(nn.Module):
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(
        jnp.mean(x, axis=(1, 2)))


class WideResNet(_common.ImageClassifier):
  """WideResNet-depth-k for 32x32 inputs (see the module docstring).

  Attributes:
    depth: total depth, 6n + 4.
    widen: widen factor k.
    norm: 'batch' (published), 'layer' or 'none'.
  """
  depth: int = 40
  widen: int = 2
  norm: str = "batch"

  min_size = 4  # two stride-2 groups

  def setup(self):
    if (self.depth - 4) % 6:
      raise ValueError(f"depth={self.depth} is not 6n + 4; use e.g. 40 or 28.")
    self.backbone = _WideBody(self.depth, self.widen, self.width, self.norm, self.dtype,
                              self.bn_axis_name)
    self.classifier = _PoolHead(self.num_classes, self.dtype)
