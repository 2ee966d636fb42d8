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

`rotate` uses the general sampler `affine_transform` (four gathers, whose
backward pass, written out, is one scatter-add of 2x2 blocks). Shear moves each row
(column) along itself by its own offset, so it uses `_shift`: a chain of
`where`s between static slices (`_barrel`) with a hand-written transpose, no
gather and no scatter (the EPM's, with |m| <= 1, over the few shifts that it
can reach). Translate moves every row by
the same offset, so it uses `_resample_rows`: one (W, W) bilinear weight
matrix per image, applied as a matmul. Both equal the gather path within float
rounding (tested to 1e-6, gradients to 1e-5) and are several times cheaper on
CPU, forward and backward.

The fraction `dx = x_in - floor(x_in)` carries the gradient in the magnitude,
so d out / d m is the one-sided finite difference of neighbouring pixels even
at m = 0, where the sampling points sit exactly on pixel centres.
"""

import functools
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
  return _bilinear(images, xin, yin, fill=fill)


def _bilinear(images: jax.Array, xin: jax.Array, yin: jax.Array, *,
              fill: float) -> jax.Array:
  """Pillow's bilinear sample of every output pixel at (xin, yin), both (B, H, W).

  Returns (B, H, W, C). The backward pass is written out (`_bilinear_bwd`) and gives what
  `jax.grad` gives for the sampler: the coordinate gradients sum the
  channels by slices, and the image gradient is one scatter-add of each
  output pixel's 2x2 block (autodiff's is four). On CPU this is 1.7-2x
  faster than autodiff's own backward pass.
  """
  return _bilinear_vjp(images, xin, yin, fill)


def _bilinear_parts(images, xin, yin):
  b, h, w, c = images.shape
  valid = (xin >= 0.0) & (xin < w) & (yin >= 0.0) & (yin < h)   # (B, H, W)
  # Clamping the pixel-centre coordinate to [0, W - 1] is Pillow's border
  # replication: a point left of the first centre takes the first pixel.
  # The clamps' backward passes are autodiff's own (`jnp.clip` gives 1/2 on a
  # bound), kept as residuals so that they see the very values clipped here.
  xs, clip_x = jax.vjp(lambda v: jnp.clip(v, 0.0, w - 1.0), xin - 0.5)
  ys, clip_y = jax.vjp(lambda v: jnp.clip(v, 0.0, h - 1.0), yin - 0.5)
  x0f = jnp.floor(xs)
  y0f = jnp.floor(ys)
  dx = (xs - x0f)[..., None]
  dy = (ys - y0f)[..., None]
  x0 = x0f.astype(jnp.int32)
  y0 = y0f.astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, w - 1)
  y1 = jnp.minimum(y0 + 1, h - 1)
  # Four gathers of C values from the flat pixels; on CPU this is several
  # times faster than one gather of a concatenated 2x2 neighbourhood, forward
  # and backward (XLA fuses the index arithmetic into each gather).
  first = (jnp.arange(b, dtype=jnp.int32) * (h * w))[:, None, None]
  index = [(first + y * w + x).reshape(-1) for y, x in ((y0, x0), (y0, x1), (y1, x0), (y1, x1))]
  return valid, dx, dy, index, clip_x, clip_y


def _gather(images, index):
  b, h, w, c = images.shape
  flat = images.reshape(b * h * w, c)
  return flat.at[index].get(mode="promise_in_bounds").reshape(b, h, w, c)


def _bilinear_out(images, xin, yin, fill):
  valid, dx, dy, index, clip_x, clip_y = _bilinear_parts(images, xin, yin)
  taps = tuple(_gather(images, i) for i in index)   # top left, top right, bottom left, right
  top_left, top_right, bottom_left, bottom_right = taps
  top = top_left + dx * (top_right - top_left)
  bottom = bottom_left + dx * (bottom_right - bottom_left)
  out = top + dy * (bottom - top)
  out = jnp.where(valid[..., None], out, jnp.asarray(fill, images.dtype))
  # The backward pass needs the taps and only the top-left tap's index.
  return out, (valid, dx, dy, index[0], taps, clip_x, clip_y)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bilinear_vjp(images, xin, yin, fill):
  return _bilinear_out(images, xin, yin, fill)[0]


def _bilinear_fwd(images, xin, yin, fill):
  out, res = _bilinear_out(images, xin, yin, fill)
  return out, res + (images.shape,)


def _bilinear_bwd(fill, res, ct):
  del fill
  valid, dx, dy, top_left_index, (tl, tr, bl, br), clip_x, clip_y, shape = res
  b, h, w, c = shape
  g = jnp.where(valid[..., None], ct, 0.0)
  d_dx = g * ((1.0 - dy) * (tr - tl) + dy * (br - bl))
  d_dy = g * ((bl + dx * (br - bl)) - (tl + dx * (tr - tl)))   # bottom - top
  g_xs = sum(d_dx[..., i] for i in range(c))
  g_ys = sum(d_dy[..., i] for i in range(c))
  g_xin, = clip_x(g_xs)
  g_yin, = clip_y(g_ys)
  # One scatter-add of each output pixel's 2x2 block of weighted gradients at
  # its top-left tap, into the batch's rows stacked, one row and one column
  # larger. A tap clamped onto the last row or column (y1 = y0 = H - 1) has
  # weight 0 there (dy = 0), so it may land in the margin or on the next
  # image's first row, and adds nothing.
  top_row = jnp.stack([g * ((1.0 - dx) * (1.0 - dy)), g * (dx * (1.0 - dy))], axis=-2)
  bottom_row = jnp.stack([g * ((1.0 - dx) * dy), g * (dx * dy)], axis=-2)
  updates = jnp.stack([top_row, bottom_row], axis=-3).reshape(-1, 2, 2, c)
  corner = jnp.stack([top_left_index // w, top_left_index % w], axis=-1)   # (stack row, column)
  numbers = jax.lax.ScatterDimensionNumbers(update_window_dims=(1, 2, 3),
                                            inserted_window_dims=(),
                                            scatter_dims_to_operand_dims=(0, 1))
  grown = jax.lax.scatter_add(jnp.zeros((b * h + 1, w + 1, c), g.dtype), corner, updates,
                              numbers, mode="promise_in_bounds")
  return grown[:b * h, :w].reshape(shape), g_xin, g_yin


_bilinear_vjp.defvjp(_bilinear_fwd, _bilinear_bwd)


def _shift(images: jax.Array, offset: jax.Array, axis: int, *,
           fill: float = FILL, reach: int | None = None) -> jax.Array:
  """Bilinear resampling along one axis by a per-line (or per-image) offset.

  The special case of `affine_transform` where output pixel i of a line
  (a row for axis=2, a column for axis=1) samples the same line at the input
  coordinate i + 0.5 + offset (pixel-edge convention). With k = floor(offset)
  and f = offset - k, every pixel of the line mixes the same two taps,

    out[i] = (1 - f) E[i + k] + f E[i + k + 1]      (valid pixels),

  where E is the line with its border pixels replicated outwards: that is
  exactly Pillow's bilinear sample with its border clamp (a point left of the
  first centre takes the first pixel, and both taps of a clamped point are
  the same pixel, so d out / d offset is 0 there, as in `affine_transform`).

  The integer shift k varies per line, so it is applied by `_barrel`: a chain
  of `where`s between static slices (one per bit of k + W, or one per shift
  when there are few). There is no gather and no scatter; the result
  equals the gather path within float rounding (tested to 1e-6). The
  backward pass (`_shift_bwd`) is the exact transpose, again a `_barrel`
  shift of the output gradient the other way, with the border copies folded back
  onto the border pixels. The fraction f carries the gradient in the offset,
  so d out / d offset is the one-sided finite difference
  E[i + k + 1] - E[i + k], also at integer offsets.

  The barrel's cost grows with the range of k it must cover: every line is
  padded by that range and shifted through the chain. Without `reach` it
  covers every k that leaves a valid pixel, [-n, n - 1] on a line of n
  pixels. A caller that knows every k lies in [-reach, reach - 1] passes
  `reach` for a shorter barrel: shear with |m| <= 1 (|offset| <= 0.15 n)
  needs 10 shifts (one `where` each) instead of 64 (6 bits) at n = 32, and a
  third of the padding. A k
  outside that range is clipped into it, which is wrong for its line.

  Args:
    images: float32 images, shape (B, H, W, C).
    offset: the shift in pixels (positive samples from higher indices), one
      per line: shape (B, H) for axis=2, (B, W) for axis=1.
    axis: 2 to shift along the width, 1 to shift along the height.
    fill: the value of output pixels whose source lies outside the line.
    reach: None, or a static bound such that every floor(offset) lies in
      [-reach, reach - 1] (see above).

  Returns:
    The resampled images, shape (B, H, W, C).
  """
  n = images.shape[axis]
  return _shift_vjp(images, offset, axis, fill, n if reach is None else min(reach, n))


def _line(a: jax.Array, axis: int) -> jax.Array:
  """(B, lines) -> (B, lines, 1, 1) for axis 2, (B, 1, lines, 1) for axis 1."""
  return a[:, :, None, None] if axis == 2 else a[:, None, :, None]


# Up to this many shifts, `_barrel` selects each shift from its own slice.
_LINEAR_MAX_SHIFT = 16


def _barrel(line: jax.Array, u: jax.Array, axis: int, length: int, max_shift: int,
            mode: str) -> jax.Array:
  """out[i] = line[i + u] along `axis` for i < length, 0 <= u <= max_shift per line.

  For a few shifts (max_shift <= 16, shear's `unit_fn` at 32 px needs 10), a
  chain of `where`s, one per shift, each reading its own static slice of the
  padded line. For more, a barrel shifter: one `where` between two static
  slices per bit of u, the largest bit first. Both give the same values. XLA
  fuses either chain into its consumers, where the barrel's levels each read
  the level before twice, so its fused cost grows as 2^bits per element; in
  the soft EPM the one-per-shift chain made shear about 25% cheaper, while
  for the full range (64 shifts at 32 px) the barrel is 4x faster forward
  and backward.

  Args:
    line: (B, H, W, C) data, at least `length` long along `axis`; positions
      past its end read as `jnp.pad(line, ..., mode=mode)` would give.
    u: int32 shifts in [0, max_shift], (B, lines) as `_line` expects.
    axis: 1 or 2.
    length: the output length along `axis`.
    max_shift: the largest possible u.
    mode: 'edge' or 'constant' (zeros), the padding past the end.

  Returns:
    The shifted data, `length` long along `axis`.
  """
  pad = [(0, 0)] * 4
  if max_shift <= _LINEAR_MAX_SHIFT:
    pad[axis] = (0, max(0, length + max_shift - line.shape[axis]))
    line = jnp.pad(line, pad, mode=mode)
    out = jax.lax.slice_in_dim(line, 0, length, axis=axis)
    for shift in range(1, max_shift + 1):
      out = jnp.where(_line(u == shift, axis),
                      jax.lax.slice_in_dim(line, shift, shift + length, axis=axis), out)
    return out
  bits = max(1, max_shift.bit_length())
  pad[axis] = (0, max(0, length + 2 ** bits - 1 - line.shape[axis]))
  line = jnp.pad(line, pad, mode=mode)
  for bit in reversed(range(bits)):
    step = 2 ** bit
    size = line.shape[axis] - step
    take = _line(jnp.bitwise_and(jnp.right_shift(u, bit), 1) == 1, axis)
    line = jnp.where(take, jax.lax.slice_in_dim(line, step, step + size, axis=axis),
                     jax.lax.slice_in_dim(line, 0, size, axis=axis))
  return jax.lax.slice_in_dim(line, 0, length, axis=axis)


def _shift_fwd(images, offset, axis, fill, r):
  n = images.shape[axis]
  # The position along the line, broadcast on axis 2 or axis 1 of NHWC.
  index = jnp.arange(n, dtype=jnp.float32).reshape((n, 1) if axis == 1 else (n,))
  pos = _line(offset, axis) + (index[..., None] + 0.5)
  valid = (pos >= 0.0) & (pos < n)
  k = jax.lax.stop_gradient(jnp.floor(offset))
  frac = _line(offset - k, axis)
  # The line E with n border copies on the left (`_barrel` extends the right):
  # E[i + k] for i in [0, n] is padded[i + u], u = k + r. With r = n, a shift
  # outside [-n, n - 1] leaves no valid pixel, so clipping it changes only
  # masked values; a smaller r is passed only when every k lies in [-r, r - 1].
  pad = [(0, 0)] * 4
  pad[axis] = (r, 0)
  taps = _barrel(jnp.pad(images, pad, mode="edge"),
                 (jnp.clip(k, -r, r - 1) + r).astype(jnp.int32), axis, n + 1,
                 2 * r - 1, "edge")
  left = jax.lax.slice_in_dim(taps, 0, n, axis=axis)
  slope = jax.lax.slice_in_dim(taps, 1, n + 1, axis=axis) - left
  out = jnp.where(valid, left + frac * slope, jnp.asarray(fill, images.dtype))
  return out, (valid, frac, k, slope)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_vjp(images, offset, axis, fill, r):
  """`_shift_fwd`'s output; r is the barrel's range, k in [-r, r - 1]."""
  return _shift_fwd(images, offset, axis, fill, r)[0]


def _shift_bwd(axis, fill, r, residuals, ct):
  """The exact transpose of `_shift_fwd`, again gather- and scatter-free."""
  del fill
  valid, frac, k, slope = residuals
  n = ct.shape[axis]
  ct = jnp.where(valid, ct, 0.0)
  # d out / d offset = E[i + k + 1] - E[i + k], summed over the line.
  g_offset = jnp.sum(ct * slope, axis=(axis, 3))              # (B, lines)
  # The gradient w.r.t. the taps, by tap position q = i (+1) in [0, n]:
  # c[q] = (1 - f) ct[q] + f ct[q - 1]; tap q read E[q + k].
  pad = [(0, 0)] * 4
  pad[axis] = (0, 1)
  c = (1.0 - frac) * jnp.pad(ct, pad)
  pad[axis] = (1, 0)
  c = c + frac * jnp.pad(ct, pad)
  # E[p] = image[clip(p, 0, n - 1)]: an interior pixel p receives c[p - k]
  # (the barrel the other way, zeros coming in); the border pixels also
  # receive every tap that was clamped onto them.
  pad[axis] = (r, 0)
  moved = _barrel(jnp.pad(c, pad), (jnp.clip(-k, -r, r) + r).astype(jnp.int32),
                  axis, n, 2 * r, "constant")
  q = jnp.arange(n + 1, dtype=jnp.float32).reshape((n + 1, 1, 1) if axis == 1
                                                   else (n + 1, 1))
  p = q + _line(k, axis)                                       # E position
  low = jnp.sum(jnp.where(p <= 0, c, 0.0), axis=axis, keepdims=True)
  high = jnp.sum(jnp.where(p >= max(n - 1, 1), c, 0.0), axis=axis, keepdims=True)
  j = q[:n]
  g = jnp.where(j == 0, low, moved)
  g = jnp.where(j == n - 1, g + high if n == 1 else high, g)
  return g, g_offset


_shift_vjp.defvjp(_shift_fwd, _shift_bwd)


def _resample_rows(images: jax.Array, xin: jax.Array, *,
                   fill: float = FILL) -> jax.Array:
  """Translation along the width axis, as one (W, W) matmul per image.

  The special case of `affine_transform` with (d, e, f) = (0, 1, 0) and an
  x_in that is the same for every row: each output row mixes its own input
  row with the same weights,

    out[b, y, x] = sum_j Wx[b, x, j] img[b, y, j]   (valid pixels),

  where Wx holds the 1-D bilinear weights (1 - dx) at the left neighbour x0
  and dx at the right one min(x0 + 1, W - 1) (Pillow's border clamp). The
  weights are built from one-hot masks, so there is no gather, no scatter in
  the backward pass and no division or abs kink: gradients stay finite, and
  the fraction dx carries the gradient in the magnitude exactly as in
  `affine_transform`. For translate this matmul is cheaper on CPU than the
  barrel shifter of `_shift` (measured in the stage-2 step); shear, whose
  weights differ per row, uses `_shift`.

  Args:
    images: float32 images, shape (B, H, W, C).
    xin: input x coordinate (pixel-edge convention, as `affine_transform`'s
      a (x + .5) + c) of every output column, shape (B, 1, W).
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
             + dx * (j == x1).astype(images.dtype))   # (B, 1, W, W)
  out = jnp.einsum("bxj,byjc->byxc", weights[:, 0], images)
  return jnp.where(valid[..., None], out, jnp.asarray(fill, images.dtype))


def _resample_cols(images: jax.Array, yin: jax.Array, *,
                   fill: float = FILL) -> jax.Array:
  """`_resample_rows` along the height axis.

  Args:
    images: float32 images, shape (B, H, W, C).
    yin: input y coordinate of every output row, shape (B, 1, H).
    fill: the value of output pixels whose source lies outside [0, H).

  Returns:
    The resampled images, shape (B, H, W, C).
  """
  return jnp.swapaxes(
      _resample_rows(jnp.swapaxes(images, 1, 2), yin, fill=fill), 1, 2)


def _matrix(*coefficients: jax.Array) -> jax.Array:
  batch = jnp.broadcast_shapes(*(jnp.shape(x) for x in coefficients))
  return jnp.stack([jnp.broadcast_to(x, batch) for x in coefficients], axis=-1)


def _shear_reach(n: int) -> int:
  """The barrel range that covers shear's integer shifts for |m| <= 1 on n-pixel lines.

  The largest offset is 0.3 (n/2 - 0.5) pixels, so floor(offset) lies in
  [-ceil(0.15 n), ceil(0.15 n) - 1].
  """
  return max(1, math.ceil(SHEAR_SCALE * n / 2))


def shear_x(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
            key: jax.Array | None = None, *, unit_magnitude: bool = False) -> jax.Array:
  """Shears horizontally by the factor 0.3 * m about the image centre.

  Output pixel (x, y) samples the input at (x + s (y - H/2), y), s = 0.3 m,
  Pillow's AutoAugment ShearX data (1, s, 0, 0, 1, 0) re-centred.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.
    unit_magnitude: promise that every |m| <= 1, for a shorter barrel shifter
      (`_shift`'s reach; the EPM's magnitudes always are, and it passes True).
      A larger |m| then gives wrong values; by default any m is exact.

  Returns:
    The sheared images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, h, _, _ = images.shape
  s = SHEAR_SCALE * check_magnitude(magnitude, images.shape[0])
  yo = jnp.arange(h, dtype=jnp.float32) + 0.5
  # The matrix (1, s, -s H/2, 0, 1, 0): row y moves by s (y + .5 - H/2).
  return _shift(images, s[:, None] * (yo - h / 2), axis=2,
                reach=_shear_reach(h) if unit_magnitude else None)


def shear_y(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
            key: jax.Array | None = None, *, unit_magnitude: bool = False) -> jax.Array:
  """Shears vertically by the factor 0.3 * m about the image centre.

  Output pixel (x, y) samples the input at (x, y + s (x - W/2)), s = 0.3 m.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.
    unit_magnitude: as in `shear_x`.

  Returns:
    The sheared images; uncovered pixels are 0.5.
  """
  del key
  images = check_images(images)
  _, _, w, _ = images.shape
  s = SHEAR_SCALE * check_magnitude(magnitude, images.shape[0])
  xo = jnp.arange(w, dtype=jnp.float32) + 0.5
  # The matrix (1, 0, 0, s, 1, -s W/2): column x moves by s (x + .5 - W/2).
  return _shift(images, s[:, None] * (xo - w / 2), axis=1,
                reach=_shear_reach(w) if unit_magnitude else None)


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
  xo = jnp.arange(w, dtype=jnp.float32) + 0.5
  # The matrix (1, 0, t, 0, 1, 0): every row moves by t.
  return _resample_rows(images, xo + t[:, None, None])


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
  yo = jnp.arange(h, dtype=jnp.float32) + 0.5
  # The matrix (1, 0, 0, 0, 1, t): every column moves by t.
  return _resample_cols(images, yo + t[:, None, None])


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
