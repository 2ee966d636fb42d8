"""The paper's evaluation perturbations (Table 2 and Fig. 2), in jax.numpy.

The paper evaluated with PyTorch 1.13 / torchvision transforms, so every op here
follows torchvision's semantics, including the defaults the paper did not
spell out. Each default relied on is written in the op's docstring.

These are evaluation transforms, not data loading: the robustness sweep
(`eriep_jax.evaluate.robustness`) applies them to the test batches. The module
imports no TensorFlow.

Contract: images are float32 batches (B, H, W, C) in [0, 1], NHWC (the
package's contract, `eriep_jax.images`; any float dtype is accepted). Every
function has the signature ``fn(images, key, **options) -> images``, is pure,
jit-able and vmap-free for the caller, and draws independent randomness for
every sample of the batch (``jax.random.split(key, B)``). Random ops are a
parameter sampler plus a deterministic core, so the core can be tested and
reused on its own:

    ======== ==============================================================
    perturb1 RandomErasing(scale=(0.01, 0.05)) -> RandomCrop(32, padding=4)
    perturb2 RandomRotation(15) -> RandomHorizontalFlip() ->
             ColorJitter(brightness=0.4, contrast=0.4)
    perturb3 GaussianBlur(kernel_size=3, sigma=0.5)
    noise_s  x + N(0, s^2) per pixel, clipped to [0, 1]   (Fig. 2)
    ======== ==============================================================

Example:

    fn = get_eval_perturbation('perturb2')
    x_p = jax.jit(fn)(images, jax.random.key(0))
"""

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from eriep_jax import images as images_lib
from eriep_jax.ops import torchvision_color as tvc

__all__ = [
    "EVAL_PERTURBATIONS", "ORACLE_CHOICES", "get_eval_perturbation", "identity", "oracle",
    "perturb_1",
    "perturb_2", "perturb_3", "gaussian_noise", "random_erasing", "erase",
    "random_erasing_params", "random_crop", "translate", "random_rotation",
    "rotate", "random_rotation_params", "random_horizontal_flip",
    "color_jitter", "color_jitter_params", "adjust_brightness",
    "adjust_contrast", "gaussian_blur", "gaussian_kernel1d",
]

Perturbation = Callable[[jax.Array, jax.Array], jax.Array]



def _check_images(images: jax.typing.ArrayLike, fn: str) -> jax.Array:
  """The image contract of every perturbation, named after the calling `fn`.

  `eriep_jax.images.check_images` with this module's options: any float dtype
  (float32 is the contract), any channel count, rank 4; checked while tracing.
  """
  return images_lib.check_images(images, caller=fn, float32_only=False,
                                 channels=None, min_size=0,
                                 allow_empty_batch=True)


def _sample_keys(key: jax.Array, n: int) -> jax.Array:
  return jax.random.split(key, n)


# ----------------------------------------------------------------------------
# RandomErasing.
# ----------------------------------------------------------------------------


def erase(images: jax.typing.ArrayLike, top: jax.typing.ArrayLike,
          left: jax.typing.ArrayLike, height: jax.typing.ArrayLike,
          width: jax.typing.ArrayLike, *, value: float = 0.0) -> jax.Array:
  """Sets the rectangle [top, top+height) x [left, left+width) to `value`.

  The deterministic core of `random_erasing` (torchvision `F.erase`).

  Args:
    images: (B, H, W, C) float images.
    top, left, height, width: (B,) integer rectangle per sample; a height or
      width of 0 leaves the sample unchanged.
    value: the fill value (torchvision's default 0).

  Returns:
    The erased images, same shape and dtype.
  """
  images = _check_images(images, "erase")
  _, h, w, _ = images.shape
  col = lambda v: jnp.asarray(v)[:, None, None, None]
  ys = jnp.arange(h)[None, :, None, None]
  xs = jnp.arange(w)[None, None, :, None]
  inside = ((ys >= col(top)) & (ys < col(top) + col(height))
            & (xs >= col(left)) & (xs < col(left) + col(width)))
  return jnp.where(inside, jnp.asarray(value, images.dtype), images)


def random_erasing_params(key: jax.Array, batch: int, height: int, width: int,
                          *, p: float = 0.5,
                          scale: Sequence[float] = (0.02, 0.33),
                          ratio: Sequence[float] = (0.3, 3.3),
                          attempts: int = 10) -> dict:
  """Samples torchvision `RandomErasing.get_params` for every sample.

  torchvision erases with probability `p` (`torch.rand(1) < p`). It then tries
  up to 10 times: target area = H*W*U(scale), aspect = exp(U(log ratio)),
  h = round(sqrt(area*aspect)), w = round(sqrt(area/aspect)); an attempt is
  valid when h < H and w < W, and the top-left corner is then uniform over
  [0, H-h] x [0, W-w]. When no attempt is valid the image is returned
  unchanged. Python's `round` and `jnp.round` both round half to even.

  Args:
    key: a PRNG key.
    batch, height, width: the batch size and image size.
    p: probability of erasing (torchvision default 0.5).
    scale: range of the erased area as a fraction of the image.
    ratio: range of the aspect ratio h/w (torchvision default (0.3, 3.3)).
    attempts: the number of tries (torchvision hard-codes 10).

  Returns:
    A dict of (B,) arrays: 'apply' (bool), 'top', 'left', 'height', 'width'
    (int32; 0 where not applied), 'area_fraction' and 'aspect' (the
    sampled, unrounded scale and aspect ratio of the chosen attempt).
  """
  def one(k):
    k_p, k_s, k_r, k_i, k_j = jax.random.split(k, 5)
    area = float(height * width)
    frac = jax.random.uniform(k_s, (attempts,), minval=scale[0], maxval=scale[1])
    log_ar = jax.random.uniform(k_r, (attempts,), minval=math.log(ratio[0]),
                                maxval=math.log(ratio[1]))
    aspect = jnp.exp(log_ar)
    h = jnp.round(jnp.sqrt(area * frac * aspect)).astype(jnp.int32)
    w = jnp.round(jnp.sqrt(area * frac / aspect)).astype(jnp.int32)
    valid = (h < height) & (w < width)
    first = jnp.argmax(valid)  # the first valid attempt, as torchvision's loop
    any_valid = jnp.any(valid)
    h, w = h[first], w[first]
    top = jnp.floor(jax.random.uniform(k_i) * (height - h + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_j) * (width - w + 1)).astype(jnp.int32)
    apply = (jax.random.uniform(k_p) < p) & any_valid
    zero = jnp.zeros((), jnp.int32)
    return dict(apply=apply, top=jnp.where(apply, top, zero),
                left=jnp.where(apply, left, zero),
                height=jnp.where(apply, h, zero), width=jnp.where(apply, w, zero),
                area_fraction=frac[first], aspect=aspect[first])

  return jax.vmap(one)(_sample_keys(key, batch))


def random_erasing(images: jax.typing.ArrayLike, key: jax.Array, *,
                   p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                   ratio: Sequence[float] = (0.3, 3.3),
                   value: float = 0.0) -> jax.Array:
  """torchvision `RandomErasing(p, scale, ratio, value)` per sample.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key.
    p, scale, ratio: see `random_erasing_params` (torchvision defaults).
    value: the erasing value (torchvision default 0).

  Returns:
    The images with one rectangle erased in about a fraction `p` of them.
  """
  images = _check_images(images, "random_erasing")
  b, h, w, _ = images.shape
  prm = random_erasing_params(key, b, h, w, p=p, scale=scale, ratio=ratio)
  return erase(images, prm["top"], prm["left"], prm["height"], prm["width"],
               value=value)


# ----------------------------------------------------------------------------
# RandomCrop with zero padding.
# ----------------------------------------------------------------------------


def translate(images: jax.typing.ArrayLike, dy: jax.typing.ArrayLike,
              dx: jax.typing.ArrayLike, *, padding: int) -> jax.Array:
  """out[y, x] = images[y + dy, x + dx], zero outside; |dy|, |dx| <= padding.

  The deterministic core of `random_crop`: a crop of the zero-padded image
  at corner (padding + dy, padding + dx).

  Args:
    images: (B, H, W, C) float images.
    dy, dx: (B,) integer offsets in [-padding, padding].
    padding: the zero padding on every side.

  Returns:
    The shifted images, same shape.
  """
  images = _check_images(images, "translate")
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding),
                            (0, 0)))

  def one(img, oy, ox):
    return jax.lax.dynamic_slice(img, (oy + padding, ox + padding, 0), (h, w, c))

  return jax.vmap(one)(padded, jnp.asarray(dy, jnp.int32),
                       jnp.asarray(dx, jnp.int32))


def random_crop(images: jax.typing.ArrayLike, key: jax.Array, *,
                padding: int = 4) -> jax.Array:
  """torchvision `RandomCrop(size=(H, W), padding=padding)` per sample.

  torchvision pads with `fill=0` in 'constant' mode (its defaults), then draws
  the corner i ~ randint(0, 2*padding + 1), so the offset i - padding is
  uniform over the 2*padding + 1 integers in [-padding, padding]. The crop
  size is the input size (32 for CIFAR, as in the paper's RandomCrop(32)).

  Args:
    images: (B, H, W, C) float images.
    key: a PRNG key.
    padding: zero padding on each side (4 in the paper).

  Returns:
    The randomly shifted images, same shape.
  """
  images = _check_images(images, "random_crop")
  if padding < 0:
    raise ValueError(f"padding must be >= 0; got {padding}, use e.g. padding=4")
  b = images.shape[0]
  offsets = jax.vmap(lambda k: jax.random.randint(
      k, (2,), -padding, padding + 1))(_sample_keys(key, b))
  return translate(images, offsets[:, 0], offsets[:, 1], padding=padding)


# ----------------------------------------------------------------------------
# RandomRotation, RandomHorizontalFlip, ColorJitter.
# ----------------------------------------------------------------------------


def rotate(images: jax.typing.ArrayLike, angles: jax.typing.ArrayLike, *,
           fill: float = 0.0) -> jax.Array:
  """Rotates counter-clockwise by `angles` degrees, nearest, about the centre.

  torchvision's tensor `F.rotate` with its defaults: NEAREST interpolation,
  expand=False, center=None (the image centre ((W-1)/2, (H-1)/2) in pixel
  indices) and fill 0. For every output pixel the inverse rotation gives the
  source coordinate, which is rounded half-to-even (grid_sample 'nearest');
  sources outside the image take `fill`.

  Args:
    images: (B, H, W, C) float images.
    angles: (B,) angles in degrees, positive = counter-clockwise.
    fill: value for pixels whose source lies outside the image.

  Returns:
    The rotated images, same shape.
  """
  images = _check_images(images, "rotate")
  _, h, w, _ = images.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy,
                        jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij")

  def one(img, angle):
    t = jnp.deg2rad(angle)
    cos, sin = jnp.cos(t), jnp.sin(t)
    # Inverse of a counter-clockwise turn on screen (y points down).
    src_x = jnp.round(cos * xs - sin * ys + cx).astype(jnp.int32)
    src_y = jnp.round(sin * xs + cos * ys + cy).astype(jnp.int32)
    ok = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    out = img[jnp.clip(src_y, 0, h - 1), jnp.clip(src_x, 0, w - 1)]
    return jnp.where(ok[..., None], out, jnp.asarray(fill, img.dtype))

  return jax.vmap(one)(images, jnp.asarray(angles, jnp.float32))


def random_rotation_params(key: jax.Array, batch: int, *,
                           degrees: float = 15.0) -> jax.Array:
  """Samples torchvision `RandomRotation.get_params`: angle ~ U(-degrees, degrees).

  Args:
    key: a PRNG key.
    batch: the number of samples.
    degrees: the maximum absolute angle.

  Returns:
    (B,) float32 angles in degrees.
  """
  if degrees < 0:
    raise ValueError(f"degrees must be >= 0; got {degrees}, use e.g. degrees=15")
  return jax.random.uniform(key, (batch,), minval=-degrees, maxval=degrees)


def random_rotation(images: jax.typing.ArrayLike, key: jax.Array, *,
                    degrees: float = 15.0, fill: float = 0.0) -> jax.Array:
  """torchvision `RandomRotation(degrees)`: angle ~ U(-degrees, degrees).

  Args:
    images: (B, H, W, C) float images.
    key: a PRNG key.
    degrees: the maximum absolute angle (15 in the paper).
    fill: value of the uncovered corners (torchvision default 0).

  Returns:
    The rotated images.
  """
  images = _check_images(images, "random_rotation")
  angles = random_rotation_params(key, images.shape[0], degrees=degrees)
  return rotate(images, angles, fill=fill)


def random_horizontal_flip(images: jax.typing.ArrayLike, key: jax.Array, *,
                           p: float = 0.5) -> jax.Array:
  """torchvision `RandomHorizontalFlip(p)`: mirrors left-right with prob. p."""
  images = _check_images(images, "random_horizontal_flip")
  flip = jax.random.uniform(key, (images.shape[0],)) < p
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def adjust_brightness(images: jax.typing.ArrayLike,
                      factor: jax.typing.ArrayLike) -> jax.Array:
  """torchvision `adjust_brightness`: blend with black, clamp to [0, 1].

  Args:
    images: (B, H, W, C) float images.
    factor: (B,) or scalar brightness factors.

  Returns:
    clip(factor * images, 0, 1).
  """
  images = _check_images(images, "adjust_brightness")
  f = jnp.broadcast_to(jnp.asarray(factor, images.dtype), images.shape[:1])
  return tvc.brightness(images, f[:, None, None, None])


def adjust_contrast(images: jax.typing.ArrayLike,
                    factor: jax.typing.ArrayLike) -> jax.Array:
  """torchvision `adjust_contrast`: blend with the mean grey, clamp to [0, 1].

  The mean is that of the image's grayscale version (0.2989 R + 0.587 G +
  0.114 B, torchvision's `rgb_to_grayscale`) over all pixels; for one-channel
  images it is the plain mean.

  Args:
    images: (B, H, W, C) float images, C in {1, 3}.
    factor: (B,) or scalar contrast factors.

  Returns:
    clip(factor * images + (1 - factor) * mean, 0, 1).
  """
  images = _check_images(images, "adjust_contrast")
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"adjust_contrast needs 1 or 3 channels; got "
                     f"{images.shape[-1]}, pass RGB or grayscale images")
  f = jnp.broadcast_to(jnp.asarray(factor, images.dtype), images.shape[:1])
  return tvc.contrast(images, f[:, None, None, None])


def color_jitter_params(key: jax.Array, batch: int, *, brightness: float = 0.4,
                        contrast: float = 0.4) -> dict:
  """Samples torchvision `ColorJitter.get_params` for brightness and contrast.

  torchvision draws b ~ U(max(0, 1 - brightness), 1 + brightness) and
  c ~ U(max(0, 1 - contrast), 1 + contrast) and applies the adjustments in
  the order of `torch.randperm(4)` over (brightness, contrast, saturation,
  hue); with saturation and hue unset, brightness comes first with
  probability 1/2.

  Args:
    key: a PRNG key.
    batch: the number of samples.
    brightness, contrast: the jitter strengths, >= 0.

  Returns:
    A dict of (B,) arrays 'brightness', 'contrast' (factors) and
    'brightness_first' (bool).
  """
  if brightness < 0 or contrast < 0:
    raise ValueError(f"brightness and contrast must be >= 0; got {brightness} "
                     f"and {contrast}, use e.g. 0.4")
  k_b, k_c, k_o = jax.random.split(key, 3)
  return dict(
      brightness=jax.random.uniform(k_b, (batch,),
                                    minval=max(0.0, 1.0 - brightness),
                                    maxval=1.0 + brightness),
      contrast=jax.random.uniform(k_c, (batch,),
                                  minval=max(0.0, 1.0 - contrast),
                                  maxval=1.0 + contrast),
      brightness_first=jax.random.bernoulli(k_o, 0.5, (batch,)))


def color_jitter(images: jax.typing.ArrayLike, key: jax.Array, *,
                 brightness: float = 0.4, contrast: float = 0.4) -> jax.Array:
  """torchvision `ColorJitter(brightness, contrast)` per sample.

  See `color_jitter_params` for the sampling. Each adjustment clamps to
  [0, 1], so the two orders differ where pixels saturate.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key.
    brightness, contrast: the jitter strengths (0.4 in the paper).

  Returns:
    The jittered images, in [0, 1].
  """
  images = _check_images(images, "color_jitter")
  prm = color_jitter_params(key, images.shape[0], brightness=brightness,
                            contrast=contrast)
  fb, fc = prm["brightness"], prm["contrast"]
  bc = adjust_contrast(adjust_brightness(images, fb), fc)
  cb = adjust_brightness(adjust_contrast(images, fc), fb)
  return jnp.where(prm["brightness_first"][:, None, None, None], bc, cb)


# ----------------------------------------------------------------------------
# GaussianBlur.
# ----------------------------------------------------------------------------


def gaussian_kernel1d(kernel_size: int, sigma: float) -> jax.Array:
  """torchvision's `_get_gaussian_kernel1d`: exp(-x^2 / (2 sigma^2)), summed to 1.

  x runs over the integers -(k-1)/2 .. (k-1)/2.
  """
  if kernel_size <= 0 or kernel_size % 2 == 0:
    raise ValueError(f"kernel_size must be a positive odd integer; got "
                     f"{kernel_size}, use e.g. 3")
  if sigma <= 0:
    raise ValueError(f"sigma must be positive; got {sigma}, use e.g. 0.5")
  half = (kernel_size - 1) / 2.0
  x = jnp.linspace(-half, half, kernel_size)
  pdf = jnp.exp(-0.5 * (x / sigma) ** 2)
  return pdf / jnp.sum(pdf)


def gaussian_blur(images: jax.typing.ArrayLike, key: jax.Array | None = None,
                  *, kernel_size: int = 3, sigma: float = 0.5) -> jax.Array:
  """torchvision `GaussianBlur(kernel_size, sigma)` with a fixed sigma.

  torchvision pads by kernel_size // 2 in 'reflect' mode (mirror without
  repeating the edge pixel, numpy's 'reflect', scipy.ndimage's 'mirror') and
  convolves each channel with the separable kernel of `gaussian_kernel1d`.
  With one sigma value torchvision samples sigma ~ U(sigma, sigma), so the op
  is deterministic; `key` is accepted for the common signature and unused.

  Args:
    images: (B, H, W, C) float images.
    key: unused.
    kernel_size: odd kernel size (3 in the paper).
    sigma: standard deviation in pixels (0.5 in the paper).

  Returns:
    The blurred images (a convex combination, so still in [0, 1]).
  """
  del key
  images = _check_images(images, "gaussian_blur")
  k = gaussian_kernel1d(kernel_size, sigma).astype(images.dtype)
  r = kernel_size // 2
  if min(images.shape[1:3]) <= r:
    raise ValueError(f"gaussian_blur needs images larger than {r} pixels for "
                     f"reflect padding; got {images.shape[1:3]}")
  x = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
  h, w = images.shape[1:3]
  x = sum(k[i] * x[:, i:i + h] for i in range(kernel_size))
  return sum(k[i] * x[:, :, i:i + w] for i in range(kernel_size))


# ----------------------------------------------------------------------------
# Gaussian noise (Fig. 2).
# ----------------------------------------------------------------------------


def gaussian_noise(images: jax.typing.ArrayLike, key: jax.Array, *,
                   std: float, clip: bool = True) -> jax.Array:
  """Adds N(0, std^2) noise to every pixel and clips to [0, 1] (Fig. 2).

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key.
    std: the noise standard deviation, >= 0 (the paper sweeps 0 .. 0.4).
      std = 0 returns the images unchanged.
    clip: clip the result to [0, 1] (default, as the pixel range demands);
      False returns the raw sum, e.g. to measure the noise.

  Returns:
    The noisy images.

  Raises:
    ValueError: if std is negative.
  """
  images = _check_images(images, "gaussian_noise")
  if isinstance(std, (int, float)) and std < 0:
    raise ValueError(f"std must be >= 0; got {std}, use e.g. std=0.1")
  noise = jax.random.normal(key, images.shape, images.dtype)
  out = images + jnp.asarray(std, images.dtype) * noise
  return jnp.clip(out, 0.0, 1.0) if clip else out


# ----------------------------------------------------------------------------
# The paper's three perturbation sets (Table 2).
# ----------------------------------------------------------------------------


def identity(images: jax.typing.ArrayLike, key: jax.Array) -> jax.Array:
  """The 'clean' evaluation: returns the images unchanged."""
  del key
  return _check_images(images, "identity")


def perturb_1(images: jax.typing.ArrayLike, key: jax.Array, *,
              erase_p: float = 0.5, erase_scale: Sequence[float] = (0.01, 0.05),
              erase_ratio: Sequence[float] = (0.3, 3.3),
              padding: int = 4) -> jax.Array:
  """perturb-1: RandomErasing(scale=(0.01, 0.05)) then RandomCrop(32, padding=4).

  torchvision defaults relied on: p=0.5, ratio=(0.3, 3.3), value=0 and 10
  attempts for the erasing; zero ('constant', fill 0) padding for the crop,
  whose size is the input size.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key.
    erase_p, erase_scale, erase_ratio: RandomErasing options.
    padding: RandomCrop padding.

  Returns:
    The perturbed images.
  """
  images = _check_images(images, "perturb_1")
  k_e, k_c = jax.random.split(key)
  x = random_erasing(images, k_e, p=erase_p, scale=erase_scale,
                     ratio=erase_ratio)
  return random_crop(x, k_c, padding=padding)


def perturb_2(images: jax.typing.ArrayLike, key: jax.Array, *,
              degrees: float = 15.0, flip_p: float = 0.5,
              brightness: float = 0.4, contrast: float = 0.4) -> jax.Array:
  """perturb-2: RandomRotation(15), RandomHorizontalFlip(), ColorJitter(0.4, 0.4).

  torchvision defaults relied on: rotation angle ~ U(-15, 15), NEAREST
  interpolation, fill 0, centre of the image, no expansion; flip p=0.5;
  brightness and contrast factors ~ U(0.6, 1.4), applied in random order,
  brightness blends with black and contrast with the grayscale mean.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key.
    degrees, flip_p, brightness, contrast: the transforms' options.

  Returns:
    The perturbed images, in [0, 1].
  """
  images = _check_images(images, "perturb_2")
  k_r, k_f, k_j = jax.random.split(key, 3)
  x = random_rotation(images, k_r, degrees=degrees)
  x = random_horizontal_flip(x, k_f, p=flip_p)
  return color_jitter(x, k_j, brightness=brightness, contrast=contrast)


def perturb_3(images: jax.typing.ArrayLike, key: jax.Array, *,
              kernel_size: int = 3, sigma: float = 0.5) -> jax.Array:
  """perturb-3: GaussianBlur(kernel_size=3, sigma=0.5), reflect padding.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: unused (the blur is deterministic for a fixed sigma).
    kernel_size, sigma: the blur options.

  Returns:
    The blurred images.
  """
  return gaussian_blur(images, key, kernel_size=kernel_size, sigma=sigma)


ORACLE_CHOICES = ("perturb1", "perturb2", "perturb3", "noise")


def oracle(images: jax.typing.ArrayLike, key: jax.Array, *,
           max_noise_std: float = 0.4) -> jax.Array:
  """The positive control's training perturbation: one evaluation perturbation per image.

  Each image draws one of perturb-1, perturb-2, perturb-3 and Gaussian noise
  with equal probability; the noise's std is drawn per image uniformly in
  [0, max_noise_std]. The perturbations are this module's own functions with
  their evaluation parameters. ``split(key, 5)`` gives the keys of the choice,
  perturb-1, perturb-2, perturb-3 and the noise (its std, then its pixels), so
  an image that drew perturb-1 equals ``perturb_1(images, keys[1])`` at that
  image. A model trained on it trains on the kind of perturbation it is tested
  on: not a method of the paper, the ceiling that shows whether a protocol
  can see a robustness gain at all.

  Args:
    images: (B, H, W, C) float images in [0, 1].
    key: a PRNG key (the training step folds its own; never the evaluation's).
    max_noise_std: the largest noise std, >= 0.

  Returns:
    The perturbed images.
  """
  images = _check_images(images, "oracle")
  if isinstance(max_noise_std, (int, float)) and not max_noise_std >= 0:
    raise ValueError(f"max_noise_std must be >= 0; got {max_noise_std}, e.g. 0.4")
  b = images.shape[0]
  k_choice, k_1, k_2, k_3, k_noise = jax.random.split(key, 5)
  k_std, k_pixels = jax.random.split(k_noise)
  choice = jax.random.randint(k_choice, (b,), 0, len(ORACLE_CHOICES))
  std = jax.random.uniform(k_std, (b, 1, 1, 1), images.dtype, 0.0, max_noise_std)
  outs = jnp.stack([perturb_1(images, k_1), perturb_2(images, k_2), perturb_3(images, k_3),
                    gaussian_noise(images, k_pixels, std=std)])
  return outs[choice, jnp.arange(b)]


EVAL_PERTURBATIONS: dict[str, Perturbation] = {
    "clean": identity,
    "perturb1": perturb_1,
    "perturb2": perturb_2,
    "perturb3": perturb_3,
}


def get_eval_perturbation(name: str) -> Perturbation:
  """Returns the perturbation `fn(images, key) -> images` called `name`.

  Args:
    name: 'clean', 'perturb1', 'perturb2', 'perturb3', or 'noise_<std>'
      (e.g. 'noise_0.2') for `gaussian_noise` with that std.

  Returns:
    The perturbation function.

  Raises:
    ValueError: for an unknown name or a bad noise std.
  """
  if name in EVAL_PERTURBATIONS:
    return EVAL_PERTURBATIONS[name]
  if isinstance(name, str) and name.startswith("noise_"):
    try:
      std = float(name[len("noise_"):])
    except ValueError:
      std = None
    if std is None or not math.isfinite(std) or std < 0:
      raise ValueError(f"bad noise perturbation {name!r}; use 'noise_<std>' "
                       "with a number std >= 0, e.g. 'noise_0.2'")
    return functools.partial(gaussian_noise, std=std)
  valid = ", ".join(repr(n) for n in EVAL_PERTURBATIONS)
  raise ValueError(f"unknown perturbation {name!r}; use one of {valid} or "
                   "'noise_<std>' (e.g. 'noise_0.2')")
