"""The paper's 8-layer CNN, its depth variants (Fig. 3) and the shared VGG-style net.

Section 4.2 specifies the 8-layer CNN as conv layers
[64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 512, 512] with 3x3 kernels and the
VGG-16 classifier head 512-512, 512-256, 256-num_classes. Each number is a 3x3
conv (stride 1, padding 1, with bias) followed by BatchNorm (``batch_norm=True``,
the default) and ReLU; 'M' is a 2x2 max-pool with stride 2.

Choices the paper leaves open (documented here deliberately):

* **Features to 512.** At 32x32 input the last conv map is 4x4x512. The paper
  does not say how it becomes the 512 inputs of the head; we use global average
  pooling (GAP), which also makes the model independent of the input size.
* **Head.** Dense -> ReLU -> Dense -> ReLU -> Dense, no dropout (the paper
  mentions none). The hidden sizes 512 and 256 scale with ``width`` like every
  conv, so ``width=0.25`` is a quarter-width model throughout.
* **Depth variants (Fig. 3 ablation: 4, 8, 12, 16 layers).** The depth counts
  conv layers. All variants keep cnn8's layout of four stages (64, 128, 256,
  512 channels) separated by three max-pools, so the last map stays 4x4 at 32x32
  input and only depth changes; the extra convs go to the later stages as in VGG:

  ========  ==========================================================  ======
  name      conv layers                                                 convs
  ========  ==========================================================  ======
  cnn4      [64, M, 128, M, 256, M, 512]                                4
  cnn8      [64, M, 128, M, 256, 256, M, 512, 512, 512, 512]            8
  cnn12     [64, 64, M, 128, 128, M, 256 x4, M, 512 x4]                 12
  cnn16     [64, 64, M, 128, 128, M, 256 x4, M, 512 x8]                 16
  ========  ==========================================================  ======

  cnn8 is VGG-11's conv stack without its last two pools; cnn16 is VGG-19's
  conv stack without its last two pools, the same relation; cnn12 doubles the
  first two stages and the 256 stage of cnn8 (VGG-19's first three stages).
  cnn4 keeps one conv per stage, the shallowest stack with the same stages.

The features returned for Grad-CAM are the output (after BN and ReLU) of the
last conv layer; any max-pools after it belong to the head.
"""

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from eriep_jax.models import _common

__all__ = ["ConvNet", "Conv3x3", "CNN_LAYERS", "HEAD_HIDDEN", "max_pool_2x2"]

Layer = Union[int, str]

CNN_LAYERS = {
    "cnn4": (64, "M", 128, "M", 256, "M", 512),
    "cnn8": (64, "M", 128, "M", 256, 256, "M", 512, 512, 512, 512),
    "cnn12": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512),
    "cnn16": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M") + (512,) * 8,
}

# Hidden sizes of the three-layer head 512-512, 512-256, 256-num_classes (Section 4.2).
HEAD_HIDDEN = (512, 256)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool with stride 2 (odd trailing rows/columns dropped, as 'VALID').

  Same values as ``nn.max_pool(x, (2, 2), strides=(2, 2))``, written as a
  reshape and a max because XLA:CPU differentiates that ~4x faster than the
  select-and-scatter of ``reduce_window`` (measured on the 2-core dev box). At
  exact ties the gradient is shared among the tied inputs instead of going to
  one; after a ReLU such ties are zeros, whose gradient the ReLU discards.
  """
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
  """3x3 conv, stride 1, padding 1, with bias: ``nn.Conv``'s parameters and values.

  On maps of 3x3 pixels or smaller it computes the conv as 9 shifted slices and
  one matmul, because XLA:CPU's conv takes ~35x longer on a 2x2 map (VGG-16's
  last stage at 32x32 input; measured 2.4 s vs 0.07 s for batch 16, 512
  channels on the 2-core dev box). Larger maps use ``lax.conv_general_dilated``;
  on the CPU an input of at most ``_FEW_CHANNELS`` channels (the image layer)
  gets its gradient from a matmul instead of a transposed conv
  (``_conv_few_channels``), 3x faster there.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", _common.conv_kernel_init, (3, 3, cin, self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    h, w = x.shape[1], x.shape[2]
    if min(h, w) <= 3:
      p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
      # Patch channels ordered (dy, dx, cin), the row-major order of the HWIO kernel.
      patches = jnp.concatenate([p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)],
                                axis=-1)
      y = patches @ kernel.reshape(9 * cin, self.features)
    elif cin <= _FEW_CHANNELS and jax.default_backend() == "cpu":
      y = _conv_few_channels(x, kernel)
    else:
      y = _conv(x, kernel)
    return y + bias


# Inputs with at most this many channels (images) take `_conv_few_channels` on the CPU.
_FEW_CHANNELS = 4


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def _conv_few_channels(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`_conv` (same values), with the gradient to an input of few channels as a matmul.

  XLA:CPU computes the input gradient of a conv whose input has 3 channels
  (the image layer) as a transposed conv with 3 output features, which it does
  not vectorise: 13-16 ms for batch 128 at 32x32 with 16 features, against
  about 5 ms here for a matmul to the 9 taps' channels followed by a sum of 9
  shifted slices (the conv's transpose written out; 2-core dev box). The input
  gradient is needed where images are differentiated: ERIEP's reference R
  (dL_R/dx_p reaches the EPM) and the search's gradient penalty. The forward
  value and the kernel's gradient are `_conv`'s own; the input gradient equals
  autodiff's up to float rounding.
  """
  return _conv(x, kernel)


def _conv_few_channels_fwd(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _conv_few_channels_bwd(res, g):
  x, kernel = res
  _, kernel_vjp = jax.vjp(lambda k: _conv(x, k), kernel)
  b, h, w, cin = x.shape
  cout = kernel.shape[-1]
  # Each output pixel's gradient sent to the 9 input pixels it read: y[r, c, (i, j)] goes
  # to input pixel (r + i - 1, c + j - 1).
  taps = kernel.reshape(9, cin, cout).transpose(2, 0, 1).reshape(cout, 9 * cin)
  y = (g.reshape(-1, cout) @ taps.astype(g.dtype)).reshape(b, h, w, 9, cin)
  y = jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
  dx = sum(y[:, 2 - i:2 - i + h, 2 - j:2 - j + w, 3 * i + j] for i in range(3) for j in range(3))
  return dx.astype(x.dtype), kernel_vjp(g)[0]


_conv_few_channels.defvjp(_conv_few_channels_fwd, _conv_few_channels_bwd)


def _split(layers: Sequence[Layer]) -> tuple[tuple[Layer, ...], int]:
  """Splits a layer list into the part up to the last conv and a count of trailing pools."""
  layers = tuple(layers)
  convs = [i for i, v in enumerate(layers) if v != "M"]
  if not convs:
    raise ValueError(f"layers={layers!r} has no conv layer; give at least one channel count.")
  for v in layers:
    if v != "M" and not (isinstance(v, int) and v > 0):
      raise ValueError(f"layer {v!r} in layers={layers!r} is neither 'M' nor a positive int.")
  last = convs[-1] + 1
  return layers[:last], len(layers) - last


class _ConvStack(nn.Module):
  """3x3 conv (+BN) + ReLU layers and 2x2 max-pools; returns the last conv map."""
  layers: Sequence[Layer]
  width: float
  norm: str
  dtype: Any
  bn_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n_conv = 0
    for v in self.layers:
      if v == "M":
        x = max_pool_2x2(x)
        continue
      x = Conv3x3(_common.scaled(v, self.width), self.dtype, name=f"Conv_{n_conv}")(x)
      n_conv += 1
      x = _common.norm_layer(self.norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)(x)
      x = nn.relu(x)
    return x


class _MLPHead(nn.Module):
  """Trailing max-pools, global average pooling, then Dense-ReLU-Dense-ReLU-Dense."""
  hidden: Sequence[int]
  num_classes: int
  trailing_pools: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or BN in the head
    for _ in range(self.trailing_pools):
      x = max_pool_2x2(x)
    x = jnp.mean(x, axis=(1, 2))  # GAP: the paper does not say how the map becomes 512.
    for h in self.hidden:
      x = nn.relu(nn.Dense(h, dtype=self.dtype, param_dtype=jnp.float32)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(x)


class ConvNet(_common.ImageClassifier):
  """VGG-style plain CNN: conv stack, GAP and the paper's three-layer head.

  Used for cnn4/cnn8/cnn12/cnn16 (``CNN_LAYERS``) and VGG-16 (see ``vgg.py``).

  Attributes:
    layers: channel counts of 3x3 convs and 'M' for 2x2 max-pools.
    batch_norm: BatchNorm after every conv (before ReLU).
    norm: None (follow ``batch_norm``) or the normalisation after every conv:
      'batch', 'layer' (per-sample LayerNorm over H, W, C) or 'none'. The
      stage-1 critic uses 'layer' (see ``eriep_jax.search``).
    hidden: hidden sizes of the head before ``width`` scaling (512, 256).
  """
  layers: Sequence[Layer] = CNN_LAYERS["cnn8"]
  batch_norm: bool = True
  norm: Optional[str] = None
  hidden: Sequence[int] = HEAD_HIDDEN

  @property
  def min_size(self) -> int:  # every max-pool halves the map
    return 2 ** sum(1 for v in self.layers if v == "M")

  def setup(self):
    body, trailing = _split(self.layers)
    norm = self.norm or ("batch" if self.batch_norm else "none")
    self.backbone = _ConvStack(body, self.width, norm, self.dtype, self.bn_axis_name)
    self.classifier = _MLPHead(tuple(_common.scaled(h, self.width) for h in self.hidden),
                               self.num_classes, trailing, self.dtype)
