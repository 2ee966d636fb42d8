"""ConvNeXt-T (Liu et al., 2022): depths (3, 3, 9, 3), dims (96, 192, 384, 768).

Layout follows torchvision's ``convnext_tiny`` (28,589,128 parameters for 1000
classes):

* stem: 4x4 stride-4 conv (with bias) + LayerNorm;
* downsampling between stages: LayerNorm + 2x2 stride-2 conv (with bias);
* block: 7x7 depthwise conv (with bias), LayerNorm, Dense 4x, exact GELU,
  Dense back, layer scale gamma (init 1e-6), drop-path, residual add;
* head: global average pooling, LayerNorm, Dense.

All LayerNorms use epsilon 1e-6; convs and Dense layers use truncated-normal
(std 0.02) kernels and zero biases, as torchvision does.

The paper feeds ConvNeXt CIFAR-10 images resized to 224x224; that resize is a
data-pipeline setting (``config.data.image_size = 224``), not part of the model.
The model accepts any input of at least 32x32 (its total stride).

Stochastic depth: torchvision trains ConvNeXt-T with drop-path rate 0.1. The
paper says only "default hyperparameters", so the default here is
``drop_path_rate=0.0`` (no extra RNG needed in the train step); pass
``drop_path_rate=0.1`` for torchvision's recipe and then supply
``rngs={'dropout': key}`` to ``apply`` in train mode. The rate grows linearly
from 0 at the first block to ``drop_path_rate`` at the last.

ConvNeXt has no BatchNorm, so its variables hold no ``batch_stats`` and the
``batch_norm``/``bn_axis_name`` options of the registry are accepted and unused. The
features returned for Grad-CAM are the output of the last stage (7x7x768 at
224x224 input).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eriep_jax.models import _common

__all__ = ["ConvNeXt", "CONVNEXT_CONFIGS"]

CONVNEXT_CONFIGS = {
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
}

LN_EPSILON = 1e-6
_kernel_init = nn.initializers.truncated_normal(stddev=0.02)


def _layer_norm(dtype: Any, name=None) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=LN_EPSILON, dtype=dtype, param_dtype=jnp.float32, name=name)


class _Block(nn.Module):
  dim: int
  drop_path: float
  layer_scale_init: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = nn.Conv(self.dim, (7, 7), padding=((3, 3), (3, 3)), feature_group_count=self.dim,
                dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_kernel_init,
                name="dwconv")(x)
    y = _layer_norm(self.dtype, name="norm")(y)
    y = nn.Dense(4 * self.dim, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=_kernel_init, name="pwconv1")(y)
    y = nn.gelu(y, approximate=False)  # torch.nn.GELU default is the exact erf form
    y = nn.Dense(self.dim, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=_kernel_init, name="pwconv2")(y)
    gamma = self.param("layer_scale", nn.initializers.constant(self.layer_scale_init),
                       (self.dim,), jnp.float32)
    y = y * gamma.astype(y.dtype)
    if self.drop_path > 0:
      # Drops the whole residual branch per example (stochastic depth), rescaled by 1/(1-p).
      y = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3), deterministic=not train)(y)
    return x + y


class _ConvNeXtBody(nn.Module):
  depths: Sequence[int]
  dims: Sequence[int]
  drop_path_rate: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda c, k, name: nn.Conv(  # noqa: E731
        c, (k, k), strides=(k, k), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=_kernel_init, name=name)
    total = sum(self.depths)
    block_id = 0
    for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
      if i == 0:
        x = conv(dim, 4, "stem_conv")(x)
        x = _layer_norm(self.dtype, name="stem_norm")(x)
      else:
        x = _layer_norm(self.dtype, name=f"downsample{i}_norm")(x)
        x = conv(dim, 2, f"downsample{i}_conv")(x)
      for j in range(depth):
        rate = self.drop_path_rate * block_id / max(total - 1, 1)
        x = _Block(dim, rate, 1e-6, self.dtype, name=f"stage{i + 1}_block{j + 1}")(x, train)
        block_id += 1
    return x


class _Head(nn.Module):
  num_classes: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = jnp.mean(x, axis=(1, 2))
    x = _layer_norm(self.dtype, name="norm")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    kernel_init=_kernel_init, name="fc")(x)


class ConvNeXt(_common.ImageClassifier):
  """ConvNeXt classifier (LayerNorm only; no batch statistics).

  Attributes:
    depths: blocks per stage.
    dims: channels per stage before ``width`` scaling.
    drop_path_rate: maximal stochastic-depth rate (0 = off, the default).
  """
  depths: Sequence[int] = (3, 3, 9, 3)
  dims: Sequence[int] = (96, 192, 384, 768)
  drop_path_rate: float = 0.0

  min_size = 32  # total stride 4 * 2 * 2 * 2

  def setup(self):
    dims = tuple(_common.scaled(d, self.width) for d in self.dims)
    self.backbone = _ConvNeXtBody(tuple(self.depths), dims, self.drop_path_rate, self.dtype)
    self.classifier = _Head(self.num_classes, self.dtype)
