"""Tests for eriep_jax.evaluate.perturbations (Table 2 and Fig. 2 perturbations)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from eriep_jax.evaluate import perturbations as P

N = 4000   # samples for the statistics; a fraction's std error is <= 0.008.

# Compile each perturbation once and reuse it (the suite runs on 2 CPU cores).
_JIT = {name: jax.jit(P.get_eval_perturbation(name))
        for name in ("perturb1", "perturb2", "perturb3")}
_erasing_params = jax.jit(functools.partial(
    P.random_erasing_params, batch=N, height=32, width=32, p=0.5,
    scale=(0.01, 0.05)))


def _images(shape, seed=0, low=0.0):
  return np.random.default_rng(seed).uniform(low, 1.0, shape).astype(np.float32)


# ----------------------------------------------------------------------------
# perturb-1: RandomErasing(scale=(0.01, 0.05)) + RandomCrop(32, padding=4).
# ----------------------------------------------------------------------------


def test_erasing_params_follow_torchvision():
  prm = jax.tree.map(np.asarray, _erasing_params(jax.random.key(1)))
  applied = prm["apply"]
  # About half the images are erased (p=0.5).
  assert abs(applied.mean() - 0.5) < 0.03
  frac, aspect = prm["area_fraction"][applied], prm["aspect"][applied]
  h, w = prm["height"][applied], prm["width"][applied]
  # The sampled erased area fraction lies in scale=(0.01, 0.05), and the aspect
  # ratio in (0.3, 3.3), log-uniform: its log has mean (log .3 + log 3.3) / 2.
  assert frac.min() >= 0.01 and frac.max() <= 0.05
  assert frac.min() < 0.0105 and frac.max() > 0.0495
  assert aspect.min() >= 0.3 - 1e-6 and aspect.max() <= 3.3 + 1e-5
  assert abs(np.log(aspect).mean() - 0.5 * np.log(0.99)) < 0.05
  # Sides are the rounded square roots, as torchvision's int(round(...)).
  np.testing.assert_array_less(np.abs(h - np.sqrt(1024 * frac * aspect)), 0.5 + 1e-3)
  np.testing.assert_array_less(np.abs(w - np.sqrt(1024 * frac / aspect)), 0.5 + 1e-3)
  # The rectangle lies inside the image, its corner uniform over the range.
  top, left = prm["top"][applied], prm["left"][applied]
  assert top.min() == 0 and left.min() == 0
  assert (top + h).max() == 32 and (left + w).max() == 32
  assert np.all(top + h <= 32) and np.all(left + w <= 32)
  # Not applied -> empty rectangle.
  assert np.all(prm["height"][~applied] == 0)


def test_random_erasing_erases_the_sampled_rectangle():
  x = _images((N, 32, 32, 3), low=0.1)   # no zero pixels before erasing
  key = jax.random.key(2)
  out = np.asarray(jax.jit(functools.partial(
      P.random_erasing, scale=(0.01, 0.05)))(x, key))
  prm = jax.tree.map(np.asarray, _erasing_params(key))
  erased = (out == 0).all(-1)
  # Erased fraction per image equals h*w/1024, and about half are erased.
  np.testing.assert_array_equal(erased.sum((1, 2)), prm["height"] * prm["width"])
  frac = erased.mean((1, 2))
  hit = frac > 0
  assert abs(hit.mean() - 0.5) < 0.03
  # Rounded sides move the realised fraction a little outside [.01, .05]; the
  # extremes over the (scale, ratio) box are 8 px (2 x 4) and 56 px (14 x 4).
  f = np.linspace(0.01, 0.05, 1500)[:, None]
  r = np.exp(np.linspace(np.log(0.3), np.log(3.3), 1500))[None]
  px = np.round(np.sqrt(1024 * f * r)) * np.round(np.sqrt(1024 * f / r))
  assert (px.min(), px.max()) == (8, 56)
  assert frac[hit].min() >= 8 / 1024 and frac[hit].max() <= 56 / 1024
  assert abs(frac[hit].mean() - 0.03) < 0.002
  # Pixels outside the rectangle are untouched.
  np.testing.assert_array_equal(out[~erased], x[~erased])
  # An exact case: erase rows 1-2, columns 0-2 of sample 0 only.
  one = np.asarray(P.erase(x[:2, :4, :4], [1, 0], [0, 0], [2, 0], [3, 0]))
  ref = x[:2, :4, :4].copy()
  ref[0, 1:3, 0:3] = 0.0
  np.testing.assert_array_equal(one, ref)


def test_random_crop_offsets_within_padding():
  # Pixel (y, x) encodes its own position, so the offset can be read back.
  code = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :] + 1) / 1024.0
  x = np.broadcast_to(code[None, :, :, None], (N, 32, 32, 1)).astype(np.float32)
  out = np.asarray(jax.jit(P.random_crop)(x, jax.random.key(3)))
  idx = np.rint(out[:, 16, 16, 0] * 1024).astype(int) - 1
  dy, dx = idx // 32 - 16, idx % 32 - 16
  assert dy.min() == -4 and dy.max() == 4 and dx.min() == -4 and dx.max() == 4
  # All 81 offsets occur, about uniformly (N / 81 = 49 each).
  counts = np.bincount((dy + 4) * 9 + (dx + 4), minlength=81)
  assert counts.min() > 20 and counts.max() < 90
  # The whole image is the zero-padded shift.
  np.testing.assert_array_equal(
      out, np.asarray(jax.jit(functools.partial(P.translate, padding=4))(x, dy, dx)))
  y, xx = np.arange(32), np.arange(32)
  ref = np.zeros((32, 32), np.float32)
  sy, sx = y + dy[0], xx + dx[0]
  oky, okx = (sy >= 0) & (sy < 32), (sx >= 0) & (sx < 32)
  ref[np.ix_(oky, okx)] = code[np.ix_(sy[oky], sx[okx])]
  np.testing.assert_allclose(out[0, :, :, 0], ref, rtol=0, atol=0)


def test_perturb_1_end_to_end():
  # Coded pixels (all > 0) reveal each output pixel's source position.
  n = 1000
  code = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :] + 1) / 1024.0
  x = np.broadcast_to(code[None, :, :, None], (n, 32, 32, 1)).astype(np.float32)
  out = np.asarray(_JIT["perturb1"](x, jax.random.key(5)))[..., 0]
  assert out.min() >= 0 and out.max() <= 1
  idx = np.rint(out * 1024).astype(int) - 1
  ys, xs = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
  dy = np.where(out > 0, idx // 32 - ys, 99)
  dx = np.where(out > 0, idx % 32 - xs, 99)
  # One crop offset per image, within [-4, 4].
  oy, ox = dy.min((1, 2)), dx.min((1, 2))
  assert np.all(np.where(out > 0, dy, oy[:, None, None]) == oy[:, None, None])
  assert np.all(np.where(out > 0, dx, ox[:, None, None]) == ox[:, None, None])
  assert oy.min() == -4 and oy.max() == 4 and ox.min() == -4 and ox.max() == 4
  # Zeros whose source lies inside the image were erased: at most 56 px
  # (the 14 x 4 rounding extreme of scale 0.05), about half the images.
  sy, sx = ys + oy[:, None, None], xs + ox[:, None, None]
  inside = (sy >= 0) & (sy < 32) & (sx >= 0) & (sx < 32)
  erased = ((out == 0) & inside).sum((1, 2))
  assert erased.max() <= 56
  assert 0.42 < (erased > 0).mean() < 0.55   # p=0.5, minus rectangles cropped away
  # Outside the image the crop pads with zeros.
  assert np.all(out[~inside] == 0)


# ----------------------------------------------------------------------------
# perturb-2: RandomRotation(15), RandomHorizontalFlip, ColorJitter(0.4, 0.4).
# ----------------------------------------------------------------------------


def test_rotate_matches_rot90_and_scipy():
  for size in (10, 11):
    x = _images((1, size, size, 3), seed=size)
    np.testing.assert_array_equal(np.asarray(P.rotate(x, [90.0]))[0], np.rot90(x[0]))
    np.testing.assert_array_equal(np.asarray(P.rotate(x, [0.0])), x)
  # Nearest neighbour about the centre, zero fill: scipy's order-0 rotate with
  # 'grid-constant' mode is the same map (scipy's axes (1, 0) = counter-clockwise).
  x = _images((3, 32, 32, 3), seed=6)
  angles = [7.3, -12.1, 14.0]
  out = np.asarray(jax.jit(P.rotate)(x, np.float32(angles)))
  for i, a in enumerate(angles):
    ref = ndi.rotate(x[i], a, axes=(1, 0), reshape=False, order=0,
                     mode="grid-constant", cval=0.0)
    assert np.mean(out[i] != ref) < 1e-3   # ties at .5 may round either way


def test_rotation_angles_and_flips():
  angles = np.asarray(P.random_rotation_params(jax.random.key(7), N, degrees=15))
  assert angles.min() >= -15 and angles.max() <= 15
  assert angles.min() < -14.9 and angles.max() > 14.9
  assert abs(angles.mean()) < 0.5 and abs(angles.std() - 30 / np.sqrt(12)) < 0.2
  x = _images((8, 16, 16, 3), seed=8)
  key = jax.random.key(9)
  np.testing.assert_array_equal(
      np.asarray(jax.jit(P.random_rotation)(x, key)),
      np.asarray(jax.jit(P.rotate)(x, P.random_rotation_params(key, 8))))
  # perturb-2 with the rotation and the jitter switched off only flips.
  x = _images((N, 4, 4, 1), seed=10)
  out = np.asarray(jax.jit(functools.partial(
      P.perturb_2, degrees=0.0, brightness=0.0, contrast=0.0))(x, jax.random.key(11)))
  flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(out == x, axis=(1, 2, 3))
  assert np.all(flipped ^ kept)
  assert abs(flipped.mean() - 0.5) < 0.03


def test_color_jitter_factors_order_and_formulas():
  prm = jax.tree.map(np.asarray, P.color_jitter_params(jax.random.key(12), N))
  for name in ("brightness", "contrast"):
    f = prm[name]
    assert f.min() >= 0.6 and f.max() <= 1.4 and f.min() < 0.61 and f.max() > 1.39
    assert abs(f.mean() - 1.0) < 0.02
  assert abs(prm["brightness_first"].mean() - 0.5) < 0.03
  # The op equals the torchvision formulas in the sampled order.
  x = _images((16, 8, 8, 3), seed=13)
  key = jax.random.key(14)
  out = np.asarray(jax.jit(P.color_jitter)(x, key))
  prm = jax.tree.map(np.asarray, P.color_jitter_params(key, 16))

  def bright(img, b):
    return np.clip(b * img, 0, 1)

  def contrast(img, c):
    mean = (img @ np.array([0.2989, 0.587, 0.114], np.float32)).mean()
    return np.clip(c * img + (1 - c) * mean, 0, 1)

  for i in range(16):
    b, c = prm["brightness"][i], prm["contrast"][i]
    if prm["brightness_first"][i]:
      ref = contrast(bright(x[i], b), c)
    else:
      ref = bright(contrast(x[i], c), b)
    np.testing.assert_allclose(out[i], ref, atol=1e-6)


# ----------------------------------------------------------------------------
# perturb-3: GaussianBlur(3, 0.5) with reflect padding.
# ----------------------------------------------------------------------------


def test_blur_matches_hand_kernel_and_scipy():
  x = _images((64, 32, 32, 3), seed=15)
  out = np.asarray(_JIT["perturb3"](x, jax.random.key(0)))
  # Hand-built kernel: exp(-x^2 / (2 * 0.25)) at x = -1, 0, 1.
  k1 = np.array([np.exp(-2.0), 1.0, np.exp(-2.0)])
  k1 /= k1.sum()
  np.testing.assert_allclose(np.asarray(P.gaussian_kernel1d(3, 0.5)), k1, atol=1e-7)
  k2 = np.outer(k1, k1)
  padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  ref = sum(k2[i, j] * padded[:, i:i + 32, j:j + 32] for i in range(3) for j in range(3))
  np.testing.assert_allclose(out, ref, atol=1e-5)
  # scipy: radius = int(truncate * sigma + 0.5) = 1; torch 'reflect' = 'mirror'.
  ref = ndi.gaussian_filter(x.astype(np.float64), sigma=(0, 0.5, 0.5, 0),
                            truncate=2.0, mode="mirror")
  np.testing.assert_allclose(out, ref, atol=1e-5)


# ----------------------------------------------------------------------------
# Gaussian noise (Fig. 2).
# ----------------------------------------------------------------------------


def test_gaussian_noise_std_and_identity():
  x = np.full((64, 32, 32, 3), 0.5, np.float32)
  noisy = jax.jit(P.gaussian_noise, static_argnames="clip")
  for std in (0.05, 0.2, 0.4):
    raw = np.asarray(noisy(x, jax.random.key(16), std=std, clip=False))
    noise = raw - x
    assert abs(noise.std() / std - 1.0) < 0.01   # 196,608 draws: 0.16% std error
    assert abs(noise.mean()) < 0.01 * std
    clipped = np.asarray(noisy(x, jax.random.key(16), std=std, clip=True))
    np.testing.assert_allclose(clipped, np.clip(raw, 0, 1), atol=1e-7)
  y = _images((4, 8, 8, 3), seed=17)
  np.testing.assert_array_equal(np.asarray(P.gaussian_noise(y, jax.random.key(0), std=0.0)), y)
  np.testing.assert_array_equal(
      np.asarray(P.get_eval_perturbation("noise_0.0")(y, jax.random.key(0))), y)


# ----------------------------------------------------------------------------
# Registry, errors, jit, gradients, per-sample randomness.
# ----------------------------------------------------------------------------


def test_registry_and_errors():
  assert set(P.EVAL_PERTURBATIONS) == {"clean", "perturb1", "perturb2", "perturb3"}
  fn = P.get_eval_perturbation("noise_0.2")
  assert isinstance(fn, functools.partial) and fn.keywords == {"std": 0.2}
  y = _images((2, 8, 8, 3))
  np.testing.assert_array_equal(np.asarray(P.get_eval_perturbation("clean")(y, None)), y)
  with pytest.raises(ValueError, match="'perturb1', 'perturb2'"):
    P.get_eval_perturbation("perturb4")
  with pytest.raises(ValueError, match="noise_abc"):
    P.get_eval_perturbation("noise_abc")
  with pytest.raises(ValueError, match="noise_-0.1"):
    P.get_eval_perturbation("noise_-0.1")
  with pytest.raises(TypeError, match="uint8"):
    P.perturb_1(np.zeros((2, 8, 8, 3), np.uint8), jax.random.key(0))
  with pytest.raises(ValueError, match=r"\(8, 8, 3\)"):
    P.perturb_2(np.zeros((8, 8, 3), np.float32), jax.random.key(0))
  with pytest.raises(ValueError, match="-0.5"):
    P.gaussian_noise(y, jax.random.key(0), std=-0.5)


def test_outputs_in_range_and_samples_differ():
  x = _images((64, 32, 32, 3), seed=18)
  key = jax.random.key(19)
  for name in ("perturb2", "perturb3"):
    out = np.asarray(_JIT[name](x, key))
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
  # Each sample draws its own randomness: identical inputs, different outputs.
  same = np.broadcast_to(x[:1], x.shape)
  out = np.asarray(_JIT["perturb2"](same, key))
  assert len({out[i].tobytes() for i in range(64)}) == 64


def test_gradients_are_finite_on_constant_images():
  # One all-zero and one all-one image per batch; one compilation in all.
  x = jnp.stack([jnp.zeros((8, 8, 3)), jnp.ones((8, 8, 3))])
  # perturb1 and noise are masks and clips; rotation, jitter and blur do math.
  fns = [P.get_eval_perturbation(n) for n in ("perturb2", "perturb3")]

  @jax.jit
  def grads(im):
    return [jax.grad(lambda v, f=f: f(v, jax.random.key(0)).sum())(im) for f in fns]

  for g in grads(x):
    assert np.all(np.isfinite(np.asarray(g)))


def test_oracle_images_equal_the_evaluation_perturbations_for_the_same_key():
  x = jax.random.uniform(jax.random.key(0), (48, 32, 32, 3))
  key = jax.random.key(7)
  y = np.asarray(P.oracle(x, key))
  k_choice, k_1, k_2, k_3, k_noise = jax.random.split(key, 5)
  k_std, k_pixels = jax.random.split(k_noise)
  choice = np.asarray(jax.random.randint(k_choice, (48,), 0, 4))
  assert set(choice) == {0, 1, 2, 3}
  std = np.asarray(jax.random.uniform(k_std, (48,), jnp.float32, 0.0, 0.4))
  assert 0.0 <= std.min() and std.max() <= 0.4
  branches = [np.asarray(P.perturb_1(x, k_1)), np.asarray(P.perturb_2(x, k_2)),
              np.asarray(P.perturb_3(x, k_3))]
  for i in range(48):
    if choice[i] < 3:
      expected = branches[choice[i]][i]
    else:
      expected = np.asarray(P.gaussian_noise(x, k_pixels, std=float(std[i])))[i]
    np.testing.assert_allclose(y[i], expected, atol=1e-6, err_msg=f"image {i}")
  assert P.ORACLE_CHOICES == ("perturb1", "perturb2", "perturb3", "noise")
  # max_noise_std=0: the noise branch is the identity.
  z = np.asarray(P.oracle(x, key, max_noise_std=0.0))
  np.testing.assert_array_equal(z[choice == 3], np.asarray(x)[choice == 3])
  with pytest.raises(ValueError, match="max_noise_std must be >= 0"):
    P.oracle(x, key, max_noise_std=-0.1)
