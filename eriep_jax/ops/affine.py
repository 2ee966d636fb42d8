"""Affine Table-1 operations: shear, translate, rotate, flip.

All geometric ops share one bilinear sampler that reproduces Pillow's
`Image.transform(..., Image.AFFINE, resample=BILINEAR, fillcolor=...)`:

* the affine matrix (a, b, c, d, e, f) maps the centre of output pixel (x, y),
  i.e. the point (x + 0.5, y + 0.5), to the input point
  (a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f);
* an input point outside [0, W) x [0, H) gives the fill value (0.5);
* otherwise the point is shifted by -0.5 to pixel-centre coordinates and
  interpolated bilinearly from its four neighbours, with neighbours outside the
  image clamped to the border (Pillow's XCLIP/YCLIP).

`rotate` uses the general sampler `affine_transform` (a gather, whose backward
pass is a scatter-add). The four axis-aligned ops (shear_x/y, translate_x/y)
move pixels along one axis only, so each output row (column) is a fixed
linear mix of the same input row (column): they use `_resample_rows`, the
same bilinear weights applied as a batched matmul, which equals the gather
path within float rounding (tested to 1e-6) and is much cheaper on CPU,
forward and backward.

The fraction `dx = x_in - floor(x_in)` carries the gradient in the magnitude,
so d out / d m is the one-sided finite difference of neighbouring pixels even
at m = 0, where the sampling points sit exactly on pixel centres.
"""

import math

import jax
import jax.numpy as jnp

from eriep_jax.ops._validate import check_images, check_magnitude

SHEAR_SCALE = 0.3
TRANSLATE_SCALE = 0.45
ROTATE_SCALE = 30.0  # degrees
FILL = 0.5


def affine_transform(images: jax.typing.ArrayLike, matrix: jax.typing.ArrayLike,
                     *, fill: float = FILL) -> jax.Array:
  """Resamples each image with its own inverse affine matrix, as Pillow does.

  Args:
    images: float32 images, shape (B, H, W, C).
    matrix: per-image Pillow AFFINE data (a, b, c, d, e, f), shape (B, 6),
      mapping output pixel centres to input coordinates (see module docstring).
    fill: the value of output pixels whose source lies outside the image.

  Returns:
    The transformed images, shape (B, H, W, C).
  """
  images = check_images(images)
  b, h, w, c = images.shape
  matrix = jnp.asarray(matrix, jnp.float32)
  if matrix.shape != (b, 6):
    raise ValueError(
        f"matrix has shape {matrix.shape}; pass one affine matrix of 6 "
        f"coefficients per image, shape ({b}, 6).")
  xo = jnp.arange(w, dtype=jnp.float32) + 0.5
  yo = jnp.arange(h, dtype=jnp.float32) + 0.5
  m = matrix[:, :, None, None]
  xin = m[:, 0] * xo[None, None, :] + m[:, 1] * yo[None, :, None] + m[:, 2]
  yin = m[:, 3] * xo[None, None, :] + m[:, 4] * yo[None, :, None] + m[:, 5]
  valid = (xin >= 0.0) & (xin < w) & (yin >= 0.0) & (yin < h)   # (B, H, W)
  # Clamping the pixel-centre coordinate to [0, W - 1] is Pillow's border
  # replication: a point left of the first centre takes the first pixel.
  xs = jnp.clip(xin - 0.5, 0.0, w - 1.0)
  ys = jnp.clip(yin - 0.5, 0.0, h - 1.0)
  x0f = jax.lax.stop_gradient(jnp.floor(xs))
  y0f = jax.lax.stop_gradient(jnp.floor(ys))
  dx = (xs - x0f)[..., None]
  dy = (ys - y0f)[..., None]
  # One gather per output pixel: each input pixel carries its 2x2
  # neighbourhood (right and lower neighbours edge-replicated), so the
  # backward pass is a single scatter-add instead of four.
  padded = jnp.pad(images, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
  quad = jnp.concatenate([padded[:, :h, :w], padded[:, :h, 1:],
                          padded[:, 1:, :w], padded[:, 1:, 1:]], axis=-1)
  index = (y0f.astype(jnp.int32) * w + x0f.astype(jnp.int32)
           + (jnp.arange(b, dtype=jnp.int32) * (h * w))[:, None, None])
  corners = quad.reshape(b * h * w, 4 * c).at[index.reshape(-1)].get(
      mode="promise_in_bounds")
  corners = corners.reshape(b, h, w, 4, c)
  weights = jnp.concatenate([(1.0 - dx) * (1.0 - dy), dx * (1.0 - dy),
                             (1.0 - dx) * dy, dx * dy], axis=-1)
  out = jnp.sum(corners * weights[..., None], axis=-2)
  return jnp.where(valid[..., None], out, jnp.asarray(fill, images.dtype))


def _resample_rows(images: jax.Array, xin: jax.Array, *,
                   fill: float = FILL) -> jax.Array:
  """Bilinear resampling along the width axis only, as a batched matmul.

  The special case of `affine_transform` with d = 0, e = 1, f = 0: the source
  row of every output pixel is its own row, so the vertical fraction is 0 and
  output row y mixes only input row y,

    out[b, y, x] = sum_j Wx[b, y, x, j] img[b, y, j]   (valid pixels),

  where Wx holds the 1-D bilinear weights (1 - dx) at the left neighbour x0
  and dx at the right one min(x0 + 1, W - 1) (Pillow's border clamp). The
  weights are built from one-hot masks, so there is no gather, no scatter in
  the backward pass and no division or abs kink: gradients stay finite, and
  the fraction dx carries the gradient in the magnitude exactly as in
  `affine_transform`.

  Args:
    images: float32 images, shape (B, H, W, C).
    xin: input x coordinate (pixel-edge convention, as `affine_transform`'s
      a (x + .5) + b (y + .5) + c) of every output pixel, shape (B, H, W), or
      (B, 1, W) when it does not depend on the row.
    fill: the value of output pixels whose source lies outside [0, W).

  Returns:
    The resampled images, shape (B, H, W, C).
  """
  w = images.shape[2]
  valid = (xin >= 0.0) & (xin < w)
  xs = jnp.clip(xin - 0.5, 0.0, w - 1.0)
  x0f = jax.lax.stop_gradient(jnp.floor(xs))
  dx = (xs - x0f)[..., None]
  x0 = x0f.astype(jnp.int32)[..., None]
  x1 = jnp.minimum(x0 + 1, w - 1)
  j = jnp.arange(w, dtype=jnp.int32)
  weights = ((1.0 - dx) * (j == x0).astype(images.dtype)
             + dx * (j == x1).astype(images.dtype))   # (B, H or 1, W, W)
  if xin.shape[1] == 1:
    out = jnp.einsum("bxj,byjc->byxc", weights[:, 0], images)
  else:
    out = jnp.einsum("byxj,byjc->byxc", weights, images)
  return jnp.where(valid[..., None], out, jnp.asarray(fill, images.dtype))


def _resample_cols(images: jax.Array, yin: jax.Array, *,
                   fill: float = FILL) -> jax.Array:
  """`_resample_rows` along the height axis; yin has shape (B, W, H) or (B, 1, H).

  Args:
    images: float32 images, shape (B, H, W, C).
    yin: input y coordinate of every output pixel, indexed (B, x, y), or
      (B, 1, H) when it does not depend on the column.
    fill: the value of output pixels whose source lies outside [0, H).

  Returns:
    The resampled images, shape (B, H, W, C).
  """
  return jnp.swapaxes(
      _resample_rows(jnp.swapaxes(images, 1, 2), yin, fill=fill), 1, 2)


def _matrix(*coefficients: jax.Array) -> jax.Array:
  batch = jnp.broadcast_shapes(*(jnp.shape(x) for x in coefficients))
  return jnp.stack([jnp.broadcast_to(x, batch) for x in coefficients], axis=-1)


def shear_x(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
            key: jax.Array | None = None) -> jax.Array:
  """Shears horizontally by the factor 0.3 * m about the image centre.

  Output pixel (x, y) samples the input at (x + s (y - H/2), y), s = 0.3 m,
  Pillow's AutoAugment ShearX data (1, s, 0, 0, 1, 0) re-centred.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The sheared images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, h, _, _ = images.shape
  s = SHEAR_SCALE * check_magnitude(magnitude, images.shape[0])
  s = jnp.broadcast_to(s, images.shape[:1])[:, None, None]
  xo = jnp.arange(images.shape[2], dtype=jnp.float32) + 0.5
  yo = jnp.arange(h, dtype=jnp.float32)[:, None] + 0.5
  # The matrix (1, s, -s H/2, 0, 1, 0): the same row, x_in as affine_transform.
  return _resample_rows(images, xo + s * yo + -s * h / 2)


def shear_y(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
            key: jax.Array | None = None) -> jax.Array:
  """Shears vertically by the factor 0.3 * m about the image centre.

  Output pixel (x, y) samples the input at (x, y + s (x - W/2)), s = 0.3 m.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The sheared images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, _, w, _ = images.shape
  s = SHEAR_SCALE * check_magnitude(magnitude, images.shape[0])
  s = jnp.broadcast_to(s, images.shape[:1])[:, None, None]
  xo = jnp.arange(w, dtype=jnp.float32)[:, None] + 0.5
  yo = jnp.arange(images.shape[1], dtype=jnp.float32) + 0.5
  # The matrix (1, 0, 0, s, 1, -s W/2): the same column; y_in indexed (B, x, y).
  return _resample_cols(images, s * xo + yo + -s * w / 2)


def translate_x(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
                key: jax.Array | None = None) -> jax.Array:
  """Translates horizontally by 0.45 * m * W pixels.

  Output pixel x samples the input at x + 0.45 m W (Pillow's AutoAugment
  TranslateX data (1, 0, t, 0, 1, 0)), so a positive m moves the content left.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The translated images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, _, w, _ = images.shape
  t = TRANSLATE_SCALE * w * check_magnitude(magnitude, images.shape[0])
  t = jnp.broadcast_to(t, images.shape[:1])[:, None, None]
  xo = jnp.arange(w, dtype=jnp.float32) + 0.5
  # The matrix (1, 0, t, 0, 1, 0): x_in is the same for every row.
  return _resample_rows(images, xo + t)


def translate_y(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
                key: jax.Array | None = None) -> jax.Array:
  """Translates vertically by 0.45 * m * H pixels (positive m moves content up).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The translated images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, h, _, _ = images.shape
  t = TRANSLATE_SCALE * h * check_magnitude(magnitude, images.shape[0])
  t = jnp.broadcast_to(t, images.shape[:1])[:, None, None]
  yo = jnp.arange(h, dtype=jnp.float32) + 0.5
  # The matrix (1, 0, 0, 0, 1, t): y_in is the same for every column.
  return _resample_cols(images, yo + t)


def rotate(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
           key: jax.Array | None = None) -> jax.Array:
  """Rotates by 30 * m degrees counter-clockwise about the image centre.

  The matrix is the one `PIL.Image.rotate` builds: rotation by -angle about
  (W/2, H/2) in pixel-edge coordinates.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The rotated images; uncovered corners are 0.5.
  """
  del key
  images = check_images(images)
  _, h, w, _ = images.shape
  angle = -ROTATE_SCALE * (math.pi / 180.0) * check_magnitude(
      magnitude, images.shape[0])
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  cx, cy = w / 2, h / 2
  c = cos * -cx + sin * -cy + cx
  f = -sin * -cx + cos * -cy + cy
  return affine_transform(images, _matrix(cos, sin, c, -sin, cos, f))


def flip(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike = None,
         key: jax.Array | None = None) -> jax.Array:
  """Mirrors horizontally (Pillow's `ImageOps.mirror`); ignores the magnitude.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: ignored (Table 1: none).
    key: unused.

  Returns:
    The mirrored images.
  """
  del magnitude, key
  return check_images(images)[:, :, ::-1, :]
