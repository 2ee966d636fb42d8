"""SupContrast's training augmentation, on device: two random views per image.

The CIFAR training transform of Khosla et al. (2020), "Supervised Contrastive
Learning" (the SupContrast repository's ``main_supcon.py``), in torchvision::

  RandomResizedCrop(size, scale=(0.2, 1.0))              # ratio (3/4, 4/3)
  RandomHorizontalFlip()                                 # p = 0.5
  RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
  RandomGrayscale(p=0.2)

as pure, jit-able JAX: `supcon_augment` draws one view of every image of a
batch (independent draws per image, `jax.vmap` over the images, no Python
loop), and `two_views` draws two independent views, shape (B, 2, H, W, C),
for the contrastive loss::

  views = two_views(images, key)   # (B, 2, H, W, C) float32 in [0, 1]

Contract: float32 images of shape (B, H, W, C), C in {1, 3}, values in
[0, 1] (`eriep_jax.images.check_images`); every output is float32 in [0, 1]
of the input's shape. Each random step has a deterministic core
(`resized_crop`, `adjust_brightness`, `adjust_contrast`, `adjust_saturation`,
`adjust_hue`, `color_jitter`, `to_grayscale`) and `crop_boxes` draws the
crops, so the cores can be tested against references and differentiated.

Semantics are those of ``torchvision.transforms.functional`` on float tensors.
Deviations from torchvision:

* Output size: the crop is resized to the input's H x W (torchvision's
  ``size=int`` gives size x size; SupContrast uses size = 32 = H = W on
  CIFAR, where the two agree).
* Crop tries: torchvision draws up to 10 (area, ratio) pairs one after the
  other and keeps the first that fits; we draw all 10 at once and keep the
  first that fits, else the same centre-crop fallback. The tries are i.i.d.,
  so the boxes have the same distribution. Random numbers come from one
  uniform draw per image (JAX keys, not torch's generator), and the jitter
  order is the ranking of 4 uniforms, which is a uniformly random
  permutation like ``torch.randperm(4)``.
* Scale: ``scale[1]`` must be <= 1 (torchvision accepts larger values, whose
  tries almost always fail).
* Resize: bilinear with half-pixel centres and edge clamping inside the crop
  (torchvision's ``resized_crop``: crop, then ``interpolate(...,
  align_corners=False)``), antialiasing off. The crop is never larger than the
  image in either axis, so the resize only upsamples (or is the identity),
  where antialiasing changes nothing.
* No 8-bit rounding. SupContrast applies the transform to PIL images, which
  round to uint8 after each step: PIL's contrast blends with the mean
  luminance rounded to a level, its hue shift moves H in 1/256 turns, its
  grayscale rounds L. We keep float32 throughout (torchvision's tensor
  semantics), so our outputs differ from the PIL path by up to a few 8-bit
  levels.
* ColorJitter strengths are floats only (torchvision also accepts (min, max)
  pairs); a strength of 0 skips that op, as torchvision's ``None`` does.

Same as torchvision: flips and greyscale happen when a uniform is < p, and
RandomApply applies the jitter when one is < p (torchvision: unless p < it,
which differs only on a set of measure zero); grey (C = 1) images skip
saturation and hue, and greyscale keeps the channel count (3 equal channels
for RGB).
"""

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import rng
from eriep_jax.images import check_images
from eriep_jax.ops import torchvision_color as tvc

__all__ = [
    "supcon_augment", "two_views", "crop_boxes", "resized_crop",
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
    "color_jitter", "to_grayscale", "SUPCON_DEFAULTS", "CROP_TRIES",
]

# SupContrast's CIFAR recipe (main_supcon.py), torchvision's defaults elsewhere.
SUPCON_DEFAULTS = dict(scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5,
                       jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2)
CROP_TRIES = 10  # torchvision RandomResizedCrop.get_params
# Uniforms per image: crop (2 per try + 2 offsets), flip, jitter on/off,
# grayscale, 4 jitter factors, 4 for the jitter order.
_N_UNIFORMS = 2 * CROP_TRIES + 2 + 3 + 4 + 4
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 in the resize matmuls on GPU


# ----------------------------------------------------------------------------
# Checks.

def _check(images: Any, caller: str) -> jax.Array:
  return check_images(images, caller=caller)


def _per_image(value: Any, batch_size: int, name: str, caller: str) -> jax.Array:
  """A float scalar or (B,) array, broadcast to shape (B,)."""
  if isinstance(value, (bool, np.bool_)) or value is None:
    raise TypeError(f"{caller} got {name}={value!r}; pass a float scalar or a "
                    f"float array of shape ({batch_size},).")
  value = jnp.asarray(value)
  if not jnp.issubdtype(value.dtype, jnp.floating):
    raise TypeError(f"{caller} got {name} of dtype {value.dtype}; pass floats, e.g. "
                    f"`{name}.astype(jnp.float32)`.")
  if value.shape not in ((), (batch_size,)):
    raise ValueError(f"{caller} got {name} of shape {value.shape} for {batch_size} "
                     f"images; pass a scalar or an array of shape ({batch_size},).")
  return jnp.broadcast_to(value.astype(jnp.float32), (batch_size,))


def _number(value: Any, name: str, caller: str) -> float:
  """A static Python number (options are configuration, not traced values)."""
  if (isinstance(value, (jax.Array, np.ndarray)) and value.shape == ()
      and not isinstance(value, jax.core.Tracer)
      and jnp.issubdtype(value.dtype, jnp.number)):
    value = value.item()
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)):
    if isinstance(value, jax.core.Tracer):
      raise TypeError(f"{caller} got a traced {name}; options are static, bind them "
                      f"with `functools.partial({caller}, {name}=...)` before `jax.jit`.")
    raise TypeError(f"{caller} got {name}={value!r:.60}; pass a Python float.")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{caller} got {name}={value}; pass a finite number.")
  return value


def _pair(value: Any, name: str, caller: str) -> tuple[float, float]:
  if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
    raise TypeError(f"{caller} got {name}={value!r:.60}; pass a pair (low, high) "
                    "of floats.")
  return (_number(value[0], f"{name}[0]", caller),
          _number(value[1], f"{name}[1]", caller))


def _probability(value: Any, name: str, caller: str) -> float:
  p = _number(value, name, caller)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"{caller} got {name}={p:g}; pass a probability in [0, 1].")
  return p


def _check_scale(scale: Any, caller: str) -> tuple[float, float]:
  lo, hi = _pair(scale, "scale", caller)
  if not 0.0 < lo <= hi <= 1.0:
    raise ValueError(f"{caller} got scale=({lo:g}, {hi:g}); pass area fractions with "
                     "0 < scale[0] <= scale[1] <= 1, e.g. (0.2, 1.0).")
  return lo, hi


def _check_ratio(ratio: Any, caller: str) -> tuple[float, float]:
  lo, hi = _pair(ratio, "ratio", caller)
  if not 0.0 < lo <= hi:
    raise ValueError(f"{caller} got ratio=({lo:g}, {hi:g}); pass aspect ratios "
                     "(width / height) with 0 < ratio[0] <= ratio[1], e.g. (3/4, 4/3).")
  return lo, hi


def _check_jitter(jitter: Any, caller: str) -> tuple[float, float, float, float]:
  if isinstance(jitter, str) or not isinstance(jitter, Sequence) or len(jitter) != 4:
    raise TypeError(f"{caller} got jitter={jitter!r:.60}; pass four floats "
                    "(brightness, contrast, saturation, hue), e.g. (0.4, 0.4, 0.4, 0.1).")
  names = ("brightness", "contrast", "saturation", "hue")
  values = tuple(_number(v, f"jitter {n}", caller) for v, n in zip(jitter, names))
  for v, n in zip(values[:3], names):
    if v < 0:
      raise ValueError(f"{caller} got jitter {n} {v:g}; pass a strength >= 0 (the "
                       f"factor is drawn from [max(0, 1 - {n}), 1 + {n}]).")
  if not 0.0 <= values[3] <= 0.5:
    raise ValueError(f"{caller} got jitter hue {values[3]:g}; pass a hue strength in "
                     "[0, 0.5] turns.")
  return values


# ----------------------------------------------------------------------------
# Per-image cores, shape (H, W, C). The public cores vmap them over the batch.

# The colour cores are torchvision's (`eriep_jax.ops.torchvision_color`), per image.
_brightness_one = tvc.brightness
_contrast_one = tvc.contrast
_saturation_one = tvc.saturation
_hue_one = tvc.hue
_gray_one = tvc.grayscale


def _axis_weights(start, length, out_size: int, in_size: int) -> jax.Array:
  """Bilinear weights (out_size, in_size) from the span [start, start + length)."""
  o = jnp.arange(out_size, dtype=jnp.float32)
  # Half-pixel centres, clamped to the crop's first and last pixel (torch's
  # interpolate(align_corners=False) on the cropped image).
  src = start + (o + 0.5) * (length / out_size) - 0.5
  src = jnp.clip(src, start, start + jnp.maximum(length - 1.0, 0.0))
  src = jnp.clip(src, 0.0, in_size - 1.0)
  r = jnp.arange(in_size, dtype=jnp.float32)
  return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - r[None, :]))


def _crop_one(image, box, size):
  top, left, height, width = box[0], box[1], box[2], box[3]
  wy = _axis_weights(top, height, size[0], image.shape[0])
  wx = _axis_weights(left, width, size[1], image.shape[1])
  return jnp.einsum("oh,hwc,pw->opc", wy, image, wx, precision=_HIGHEST)


def _jitter_one(image, factors, order, enabled=(True, True, True, True)):
  """The four ColorJitter ops in the order ``order`` (a permutation of 0..3)."""
  ops = (_brightness_one, _contrast_one, _saturation_one, _hue_one)
  branches = [functools.partial(lambda x, op, k: op(x, factors[k]), op=op, k=k)
              if on else (lambda x: x) for k, (op, on) in enumerate(zip(ops, enabled))]

  # One slot per step of a scan: the ops are traced (and compiled) once, not
  # once per slot.
  def slot(x, index):
    return jax.lax.switch(index, branches, x), None

  return jax.lax.scan(slot, image, order)[0]


def _boxes_one(u, height: int, width: int, scale, ratio, tries: int):
  """One torchvision RandomResizedCrop box (top, left, h, w), float32.

  ``u`` holds 2 * tries + 2 uniforms in [0, 1): the tries' areas and log
  ratios, then the offsets (one draw of random bits for the whole batch
  compiles much faster than one per random step).
  """
  area = float(height * width)
  frac = scale[0] + (scale[1] - scale[0]) * u[:tries]
  lo_r, hi_r = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(lo_r + (hi_r - lo_r) * u[tries:2 * tries])  # > 0: safe to divide
  w = jnp.round(jnp.sqrt(area * frac * aspect))
  h = jnp.round(jnp.sqrt(area * frac / aspect))
  valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(valid)   # the first valid try (0 if none, unused then)
  any_valid = jnp.any(valid)
  h_try, w_try = h[first], w[first]
  # Uniform integer offsets in [0, H - h], as torch.randint(0, H - h + 1).
  top = jnp.floor(u[2 * tries] * (height - h_try + 1.0))
  left = jnp.floor(u[2 * tries + 1] * (width - w_try + 1.0))
  top = jnp.clip(top, 0.0, height - h_try)
  left = jnp.clip(left, 0.0, width - w_try)
  # The centre-crop fallback, with the aspect ratio clamped into `ratio`.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    fw, fh = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    fw, fh = int(round(height * ratio[1])), height
  else:
    fw, fh = width, height
  fallback = jnp.array([(height - fh) // 2, (width - fw) // 2, fh, fw], jnp.float32)
  box = jnp.stack([top, left, h_try, w_try]).astype(jnp.float32)
  return jnp.where(any_valid, box, fallback)


# The batched cores, compiled once per shape (eager calls stay fast too).
_BATCHED = {name: jax.jit(jax.vmap(fn)) for name, fn in (
    ("brightness", _brightness_one), ("contrast", _contrast_one),
    ("saturation", _saturation_one), ("hue", _hue_one), ("gray", _gray_one),
    ("jitter", _jitter_one))}


@functools.partial(jax.jit, static_argnums=(2,))
def _crop_batch(images, boxes, size):
  return jax.vmap(lambda x, box: _crop_one(x, box, size))(images, boxes)


# ----------------------------------------------------------------------------
# Public deterministic cores.

def resized_crop(images: jax.typing.ArrayLike, boxes: jax.typing.ArrayLike,
                 size: Sequence[int]) -> jax.Array:
  """Crops a box out of each image and resizes it bilinearly to ``size``.

  torchvision's ``resized_crop(img, top, left, height, width, size,
  BILINEAR, antialias=False)``: output pixel o samples the crop at
  ``(o + 0.5) * crop / size - 0.5`` (half-pixel centres), clamped to the
  crop's first and last pixel, so pixels outside the box are never read.
  Boxes may be fractional; integer boxes give torchvision's result. No
  antialiasing: exact for upsampling (every crop of `crop_boxes`), it aliases
  when a box is larger than ``size``. Linear in the images.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    boxes: shape (B, 4), (top, left, height, width) in pixels per image, with
      height, width >= 1 and the box inside the image.
    size: the output (height, width).

  Returns:
    float32 images of shape (B, size[0], size[1], C) in [0, 1].

  Raises:
    ValueError: ``boxes`` is not of shape (B, 4), or ``size`` is not two
      positive integers.
  """
  images = _check(images, "resized_crop")
  b = images.shape[0]
  boxes = jnp.asarray(boxes)
  if boxes.shape != (b, 4):
    raise ValueError(f"resized_crop got boxes of shape {boxes.shape} for {b} images; "
                     f"pass shape ({b}, 4), (top, left, height, width) per image.")
  if (isinstance(size, str) or not isinstance(size, Sequence) or len(size) != 2
      or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
    raise ValueError(f"resized_crop got size={size!r:.60}; pass two positive integers "
                     "(height, width).")
  size = (int(size[0]), int(size[1]))
  return _crop_batch(images, boxes.astype(jnp.float32), size)


def adjust_brightness(images: jax.typing.ArrayLike,
                      factor: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``adjust_brightness``: clip(f x, 0, 1).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    factor: f >= 0, a scalar or shape (B,); 1 is the identity, 0 is black.

  Returns:
    The adjusted images.
  """
  images = _check(images, "adjust_brightness")
  factor = _per_image(factor, images.shape[0], "factor", "adjust_brightness")
  return _BATCHED['brightness'](images, factor)


def adjust_contrast(images: jax.typing.ArrayLike,
                    factor: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``adjust_contrast``: clip(f x + (1 - f) m, 0, 1).

  m is the mean over the image of its luma (`to_grayscale`, torchvision's weights
  0.2989, 0.587, 0.114), not rounded (PIL rounds it to an 8-bit level).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    factor: f >= 0, a scalar or shape (B,); 1 is the identity, 0 is the
      uniform grey m.

  Returns:
    The adjusted images.
  """
  images = _check(images, "adjust_contrast")
  factor = _per_image(factor, images.shape[0], "factor", "adjust_contrast")
  return _BATCHED['contrast'](images, factor)


def adjust_saturation(images: jax.typing.ArrayLike,
                      factor: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``adjust_saturation``: clip(f x + (1 - f) L, 0, 1).

  L is the per-pixel luma (torchvision's weights). Grey (C = 1) images are unchanged.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    factor: f >= 0, a scalar or shape (B,); 1 is the identity, 0 is grey.

  Returns:
    The adjusted images.
  """
  images = _check(images, "adjust_saturation")
  factor = _per_image(factor, images.shape[0], "factor", "adjust_saturation")
  return _BATCHED['saturation'](images, factor)


def adjust_hue(images: jax.typing.ArrayLike, delta: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``adjust_hue``: rotates the hue by ``delta`` turns in HSV.

  RGB -> HSV (H in [0, 1) turns), H <- (H + delta) mod 1, HSV -> RGB, in
  float32 (PIL's path moves H in 1/256 turns). Grey pixels (R = G = B) and
  grey (C = 1) images are unchanged. The divisions of the HSV conversion are
  guarded, so gradients stay finite on grey and black pixels.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    delta: the hue shift in turns, a scalar or shape (B,); torchvision allows
      [-0.5, 0.5], any value works (it is taken mod 1). 0 is the identity up
      to float rounding.

  Returns:
    The hue-shifted images.
  """
  images = _check(images, "adjust_hue")
  delta = _per_image(delta, images.shape[0], "delta", "adjust_hue")
  return _BATCHED['hue'](images, delta)


def to_grayscale(images: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``rgb_to_grayscale``, replicated to the input's channels.

  L = 0.2989 R + 0.587 G + 0.114 B (torchvision's weights), not rounded; a grey (C = 1)
  image is returned unchanged.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).

  Returns:
    float32 images of the same shape with all channels equal to L.
  """
  images = _check(images, "to_grayscale")
  return _BATCHED['gray'](images)


def color_jitter(images: jax.typing.ArrayLike, factors: jax.typing.ArrayLike,
                 order: jax.typing.ArrayLike) -> jax.Array:
  """torchvision's ``ColorJitter.forward`` with given factors and order.

  Applies brightness (index 0), contrast (1), saturation (2) and hue (3) in
  the order ``order[b]`` to image b, each op clipping to [0, 1].

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    factors: shape (B, 4): brightness, contrast and saturation factors and the
      hue shift in turns, per image.
    order: int shape (B, 4), a permutation of (0, 1, 2, 3) per image.

  Returns:
    The jittered images.

  Raises:
    ValueError: ``factors`` or ``order`` is not of shape (B, 4).
    TypeError: ``order`` is not an integer array.
  """
  images = _check(images, "color_jitter")
  b = images.shape[0]
  factors, order = jnp.asarray(factors), jnp.asarray(order)
  for name, value in (("factors", factors), ("order", order)):
    if value.shape != (b, 4):
      raise ValueError(f"color_jitter got {name} of shape {value.shape} for {b} "
                       f"images; pass shape ({b}, 4).")
  if not jnp.issubdtype(order.dtype, jnp.integer):
    raise TypeError(f"color_jitter got order of dtype {order.dtype}; pass integer "
                    "permutations of (0, 1, 2, 3).")
  return _BATCHED['jitter'](images, factors.astype(jnp.float32), order.astype(jnp.int32))


def crop_boxes(key: jax.Array, batch_size: int, height: int, width: int, *,
               scale: Sequence[float] = (0.2, 1.0),
               ratio: Sequence[float] = (3 / 4, 4 / 3),
               tries: int = CROP_TRIES) -> jax.Array:
  """Draws torchvision ``RandomResizedCrop.get_params`` boxes.

  Per image and try: an area fraction s ~ U(scale), an aspect ratio
  r = exp(U(log ratio)), w = round(sqrt(s A r)), h = round(sqrt(s A / r))
  (round half to even, as Python's round), A = H W. The first try with
  0 < w <= W and 0 < h <= H wins and gets a uniform integer offset; if none
  fits, the centre crop of the whole image with its aspect ratio clamped into
  ``ratio``. All tries are drawn at once (same distribution as torchvision's
  sequential tries). Rounding lets the area fraction fall slightly outside
  ``scale`` (by at most about 1/sqrt(s A) relative), as in torchvision.

  Args:
    key: a PRNG key.
    batch_size: B.
    height: H of the images.
    width: W of the images.
    scale: (low, high) area fractions, 0 < low <= high <= 1.
    ratio: (low, high) aspect ratios width / height, 0 < low <= high.
    tries: how many draws before the fallback (torchvision: 10).

  Returns:
    float32 boxes of shape (B, 4), integer-valued (top, left, height, width).

  Raises:
    ValueError: for a bad range, size or try count.
  """
  caller = "crop_boxes"
  rng.check_key(key, caller, scalar=True)
  scale, ratio = _check_scale(scale, caller), _check_ratio(ratio, caller)
  for name, value in (("batch_size", batch_size), ("height", height), ("width", width),
                      ("tries", tries)):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
        or value < 1:
      raise ValueError(f"{caller} got {name}={value!r:.60}; pass a positive integer.")
  return _crop_boxes(key, int(batch_size), int(height), int(width), scale, ratio,
                     int(tries))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _crop_boxes(key, batch_size, height, width, scale, ratio, tries):
  u = jax.random.uniform(key, (batch_size, 2 * tries + 2))
  return jax.vmap(lambda v: _boxes_one(v, height, width, scale, ratio, tries))(u)


# ----------------------------------------------------------------------------
# The random augmentation.

def _augment_one(image, u, scale, ratio, flip_p, jitter, jitter_p, grayscale_p):
  """One view of one image from the uniforms ``u`` (`_N_UNIFORMS` of them)."""
  h, w = image.shape[0], image.shape[1]
  n = 2 * CROP_TRIES + 2
  u_crop, u_flip, u_apply, u_gray = u[:n], u[n], u[n + 1], u[n + 2]
  u_factors, u_order = u[n + 3:n + 7], u[n + 7:n + 11]
  # RandomResizedCrop.
  box = _boxes_one(u_crop, h, w, scale, ratio, CROP_TRIES)
  image = _crop_one(image, box, (h, w))
  # RandomHorizontalFlip: flip if rand < p.
  image = jnp.where(u_flip < flip_p, image[:, ::-1], image)
  # RandomApply(ColorJitter, p): ColorJitter.get_params, then the ops in a
  # random order (torch.randperm(4)).
  bs, cs, ss, hs = jitter
  lo = jnp.array([max(0.0, 1.0 - bs), max(0.0, 1.0 - cs), max(0.0, 1.0 - ss), -hs])
  hi = jnp.array([1.0 + bs, 1.0 + cs, 1.0 + ss, hs])
  factors = lo + (hi - lo) * u_factors
  # The ranks of 4 i.i.d. uniforms: a uniformly random permutation.
  order = jnp.argsort(u_order)
  enabled = tuple(s > 0 for s in jitter)
  if any(enabled) and jitter_p > 0:
    jittered = _jitter_one(image, factors, order, enabled)
    image = jnp.where(u_apply < jitter_p, jittered, image)
  # RandomGrayscale: grey if rand < p.
  if grayscale_p > 0:
    image = jnp.where(u_gray < grayscale_p, _gray_one(image), image)
  return image


@functools.partial(jax.jit, static_argnums=(2,))
def _augment(images, key, options):
  u = jax.random.uniform(key, (images.shape[0], _N_UNIFORMS))
  return jax.vmap(lambda x, v: _augment_one(x, v, *options))(images, u)


def _options(caller, scale, ratio, flip_p, jitter, jitter_p, grayscale_p) -> tuple:
  """The validated, hashable (static) options."""
  return (_check_scale(scale, caller), _check_ratio(ratio, caller),
          _probability(flip_p, "flip_p", caller), _check_jitter(jitter, caller),
          _probability(jitter_p, "jitter_p", caller),
          _probability(grayscale_p, "grayscale_p", caller))


def supcon_augment(images: jax.typing.ArrayLike, key: jax.Array, *,
                   scale: Sequence[float] = SUPCON_DEFAULTS["scale"],
                   ratio: Sequence[float] = SUPCON_DEFAULTS["ratio"],
                   flip_p: float = SUPCON_DEFAULTS["flip_p"],
                   jitter: Sequence[float] = SUPCON_DEFAULTS["jitter"],
                   jitter_p: float = SUPCON_DEFAULTS["jitter_p"],
                   grayscale_p: float = SUPCON_DEFAULTS["grayscale_p"]) -> jax.Array:
  """One random SupContrast view of every image.

  Per image, independently (its own row of uniforms drawn from ``key``):
  RandomResizedCrop(H x W, scale, ratio) -> RandomHorizontalFlip(flip_p) ->
  RandomApply(ColorJitter(*jitter), jitter_p) -> RandomGrayscale(grayscale_p).
  See the module docstring for the deviations from torchvision. The options
  are static: under `jax.jit`, bind them with `functools.partial`. The result
  depends on ``key`` and the batch size only; it is differentiable in the
  images.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C), C in {1, 3}.
    key: a PRNG key.
    scale: RandomResizedCrop's area fractions, 0 < low <= high <= 1.
    ratio: RandomResizedCrop's aspect ratios (width / height), 0 < low <= high.
    flip_p: the probability of a horizontal flip.
    jitter: ColorJitter's (brightness, contrast, saturation, hue) strengths:
      the first three draw factors from U[max(0, 1 - v), 1 + v], hue draws a
      shift from U[-v, v] turns (v <= 0.5); 0 disables an op.
    jitter_p: the probability of applying ColorJitter.
    grayscale_p: the probability of converting to grayscale (luma replicated
      to every channel).

  Returns:
    float32 images of the input's shape, values in [0, 1].

  Raises:
    TypeError: the images are not float32, the key is not a PRNG key, or an
      option is not a number (or is traced).
    ValueError: the images are not (B, H, W, C) with C in {1, 3}, the key is
      missing or a batch of keys, or an option is out of range.
  """
  caller = "supcon_augment"
  images = _check(images, caller)
  rng.check_key(key, caller, scalar=True)
  options = _options(caller, scale, ratio, flip_p, jitter, jitter_p, grayscale_p)
  return _augment(images, key, options)


def two_views(images: jax.typing.ArrayLike, key: jax.Array, **kwargs) -> jax.Array:
  """Two independent `supcon_augment` views of every image.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    key: a PRNG key; the views use ``jax.random.split(key)``.
    **kwargs: the options of `supcon_augment`.

  Returns:
    float32 views of shape (B, 2, H, W, C) in [0, 1]; ``[:, 0]`` and ``[:, 1]``
    are independent draws.

  Raises:
    TypeError, ValueError: as `supcon_augment`.
  """
  caller = "two_views"
  images = _check(images, caller)
  rng.check_key(key, caller, scalar=True)
  unknown = sorted(set(kwargs) - set(SUPCON_DEFAULTS))
  if unknown:
    raise TypeError(f"two_views got unknown options {unknown}; use "
                    f"{', '.join(SUPCON_DEFAULTS)}.")
  options = _options(caller, **{**SUPCON_DEFAULTS, **kwargs})
  k1, k2 = jax.random.split(key)
  return jnp.stack([_augment(images, k1, options), _augment(images, k2, options)], axis=1)
