"""The classifiers of the paper's experiments (Section 4.2, Tables 3-4, Fig. 3-4).

Main model N and reference model R share one architecture; build it once and
keep two parameter pytrees::

  model = get_model("cnn8", num_classes=10)                      # options below
  variables = model.init(key, x, train=False)                    # params (+ batch_stats)
  logits = model.apply(variables, x)                             # (B, 10) float32
  logits, feats = model.apply(variables, x, return_features=True)  # feats: last conv map
  logits, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
  logits = model.apply(variables, feats, method="head")          # feats -> logits (Grad-CAM)

Input: float images in [0, 1], NHWC, 3 channels (see ``_common``).

Options (keyword-only, all models):
  width: channel multiplier (> 0); every conv/hidden width is scaled and
    rounded, never below 1 channel. Default 1.0 (the published model).
  dtype: compute dtype 'float32' (default), 'bfloat16' or 'float16', or a jnp
    dtype. Parameters stay float32 and logits are returned as float32.
  normalize: mean/std normalisation at the input (default True).
  mean, std: per-channel statistics of [0, 1] images; CIFAR-10's
    (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) by default. For
    ImageNet pass ``mean=IMAGENET_MEAN, std=IMAGENET_STD``.
  bn_axis_name: axis name for cross-device BatchNorm statistics under
    ``jax.pmap(..., axis_name='batch')``; None (default) = per-device statistics.
  batch_norm: CNN/VGG: BN after every conv (default True). ResNet: must be True
    (BN is part of the architecture). ConvNeXt: accepted and ignored (it uses
    LayerNorm only). WideResNet: False means no normalisation.
  norm (CNN/VGG, WideResNet): 'batch', 'layer' (per-sample LayerNorm over
    H, W, C, the WGAN-GP critic's choice) or 'none'; None (default) follows
    ``batch_norm``. The stage-1 critic sets it from ``config.search.norm``.
Family options:
  stem (ResNets): 'cifar' (default, 3x3 stride 1, no max-pool) or 'imagenet'.
  drop_path_rate (ConvNeXt): stochastic depth, default 0.0 (see ``convnext``).
"""

import math
import numbers
from typing import Any, Callable

import flax.linen as nn

from eriep_jax.models._common import (BN_MOMENTUM, CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN,
                                      IMAGENET_STD, NORMS, canonical_dtype, validate_stats)
from eriep_jax.models.cnn import CNN_LAYERS, ConvNet
from eriep_jax.models.convnext import CONVNEXT_CONFIGS, ConvNeXt
from eriep_jax.models.resnet import RESNET_CONFIGS, STEMS, ResNet
from eriep_jax.models.vgg import VGG16_LAYERS
from eriep_jax.models.wideresnet import WRN_CONFIGS, WideResNet

__all__ = [
    "get_model", "list_models", "ConvNet", "ResNet", "ConvNeXt", "WideResNet", "NORMS",
    "BN_MOMENTUM", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD",
]

_COMMON_OPTIONS = ("width", "batch_norm", "dtype", "normalize", "mean", "std", "bn_axis_name")


def _common_kwargs(name: str, width: float = 1.0, dtype: Any = "float32", normalize: bool = True,
                   mean=CIFAR10_MEAN, std=CIFAR10_STD, bn_axis_name=None) -> dict:
  if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
    raise ValueError(f"width={width!r} for {name} must be a positive number, e.g. 0.25 for a "
                     "quarter-width model.")
  if not isinstance(normalize, bool):
    raise TypeError(f"normalize={normalize!r} for {name} must be True or False.")
  if bn_axis_name is not None and not isinstance(bn_axis_name, str):
    raise TypeError(f"bn_axis_name={bn_axis_name!r} for {name} must be None or an axis name "
                    "string such as 'batch'.")
  validate_stats(mean, std)
  return dict(width=float(width), dtype=canonical_dtype(dtype), normalize=normalize,
              mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
              bn_axis_name=bn_axis_name)


def _check_bool(name: str, option: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise TypeError(f"{option}={value!r} for {name} must be True or False.")


def _check_norm(name: str, norm: Any, batch_norm: bool) -> str:
  if norm is None:
    return "batch" if batch_norm else "none"
  if norm not in NORMS:
    raise ValueError(f"norm={norm!r} for {name} is unknown; use one of {NORMS} (or None to "
                     "follow batch_norm).")
  return norm


def _conv_net(layers):
  def build(name, num_classes, *, batch_norm=True, norm=None, **kw):
    _check_bool(name, "batch_norm", batch_norm)
    return ConvNet(num_classes=num_classes, layers=layers, batch_norm=batch_norm,
                   norm=_check_norm(name, norm, batch_norm), **_common_kwargs(name, **kw))
  build.options = _COMMON_OPTIONS + ("norm",)
  return build


def _wide_resnet(depth, widen):
  def build(name, num_classes, *, batch_norm=True, norm=None, **kw):
    _check_bool(name, "batch_norm", batch_norm)
    return WideResNet(num_classes=num_classes, depth=depth, widen=widen,
                      norm=_check_norm(name, norm, batch_norm), **_common_kwargs(name, **kw))
  build.options = _COMMON_OPTIONS + ("norm",)
  return build


def _resnet(block, stages):
  def build(name, num_classes, *, batch_norm=True, stem="cifar", **kw):
    _check_bool(name, "batch_norm", batch_norm)
    if not batch_norm:
      raise ValueError(f"batch_norm=False is not supported by {name}: BatchNorm is part of the "
                       "ResNet architecture; leave batch_norm=True.")
    if stem not in STEMS:
      raise ValueError(f"stem={stem!r} for {name} is unknown; use one of {STEMS} ('cifar' for "
                       "32x32 inputs, 'imagenet' for 224x224).")
    return ResNet(num_classes=num_classes, stage_sizes=stages, bottleneck=block == "bottleneck",
                  stem=stem, **_common_kwargs(name, **kw))
  build.options = _COMMON_OPTIONS + ("stem",)
  return build


def _convnext(depths, dims):
  def build(name, num_classes, *, batch_norm=True, drop_path_rate=0.0, **kw):
    _check_bool(name, "batch_norm", batch_norm)  # accepted, ignored: ConvNeXt has no BN
    if isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float)) \
        or not 0.0 <= drop_path_rate < 1.0:
      raise ValueError(f"drop_path_rate={drop_path_rate!r} for {name} must be in [0, 1), e.g. "
                       "0.1 for torchvision's recipe.")
    return ConvNeXt(num_classes=num_classes, depths=depths, dims=dims,
                    drop_path_rate=float(drop_path_rate), **_common_kwargs(name, **kw))
  build.options = _COMMON_OPTIONS + ("drop_path_rate",)
  return build


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{name: _conv_net(layers) for name, layers in CNN_LAYERS.items()},
    "vgg16": _conv_net(VGG16_LAYERS),
    **{name: _resnet(*cfg) for name, cfg in RESNET_CONFIGS.items()},
    **{name: _convnext(*cfg) for name, cfg in CONVNEXT_CONFIGS.items()},
    **{name: _wide_resnet(*cfg) for name, cfg in WRN_CONFIGS.items()},
}


def list_models() -> list[str]:
  """Returns the registered model names, sorted."""
  return sorted(_REGISTRY)


def get_model(name: str, num_classes: int, **options: Any) -> nn.Module:
  """Builds a registered classifier (an unbound ``flax.linen.Module``).

  Args:
    name: one of ``list_models()``: cnn4, cnn8, cnn12, cnn16, vgg16, resnet18,
      resnet50, resnet101, convnext_tiny, wrn40_2 (case-insensitive).
    num_classes: number of output logits (>= 1).
    **options: keyword options, see the module docstring (width, batch_norm,
      dtype, normalize, mean, std, bn_axis_name, and norm / stem / drop_path_rate).

  Returns:
    The model; call ``init``/``apply`` with ``train=`` and ``return_features=``.

  Raises:
    ValueError: for an unknown name (the message lists the valid names), a bad
      ``num_classes`` or a bad option value.
    TypeError: for an option the model does not take, or an option of the
      wrong type.
  """
  if not isinstance(name, str) or name.lower() not in _REGISTRY:
    raise ValueError(f"unknown model name {name!r}; valid names are {list_models()}.")
  key = name.lower()
  if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
      or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r} must be a positive int, e.g. 10 for CIFAR-10.")
  build = _REGISTRY[key]
  unknown = sorted(set(options) - set(build.options))
  if unknown:
    raise TypeError(f"{key} does not take option(s) {unknown}; valid options are "
                    f"{sorted(build.options)}.")
  return build(key, int(num_classes), **options)
