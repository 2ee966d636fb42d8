"""Tests for Grad-CAM, the Fig. 4 blur and the CAM-stability score (eriep_jax.evaluate.gradcam)."""

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from eriep_jax import data
from eriep_jax import experiment
from eriep_jax.evaluate import gradcam
from eriep_jax.models import get_model

import tiny


class _QuadrantNet(nn.Module):
  """A hand-built conv net whose class k score depends on image quadrant k only.

  Features (B, 4, 4, 4) at half the 8x8 input resolution: channel q is the
  image's brightness (a fixed 1x1 conv: the channel mean) 2x2-max-pooled and
  kept only inside quadrant q. The head is GAP and a fixed identity-like Dense,
  so y_k = 4 * mean(A_k) = the mean brightness of quadrant k.
  """

  @nn.compact
  def __call__(self, x, *, train=False, return_features=False):
    del train
    b = x.mean(axis=-1, keepdims=True)                              # (B, 8, 8, 1)
    b = b.reshape(b.shape[0], 4, 2, 4, 2, 1).max(axis=(2, 4))       # (B, 4, 4, 1)
    q = np.zeros((4, 4, 4), np.float32)
    q[:2, :2, 0] = q[:2, 2:, 1] = q[2:, :2, 2] = q[2:, 2:, 3] = 1.0
    feats = nn.relu(b * q)
    logits = self.head(feats)
    return (logits, feats) if return_features else logits

  def head(self, features, *, train=False):
    del train
    return 4.0 * jnp.mean(features, axis=(1, 2))


_QUADRANTS = {0: (slice(0, 4), slice(0, 4)), 1: (slice(0, 4), slice(4, 8)),
              2: (slice(4, 8), slice(0, 4)), 3: (slice(4, 8), slice(4, 8))}


def test_map_peaks_in_the_region_the_class_depends_on():
  net = _QuadrantNet()
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3), minval=0.2, maxval=1.0)
  cams = np.asarray(gradcam.grad_cam(net, {}, x, jnp.arange(4)))   # image k explains class k
  for k, (rows, cols) in _QUADRANTS.items():
    peak = np.unravel_index(np.argmax(cams[k]), cams[k].shape)
    assert rows.start <= peak[0] < rows.stop and cols.start <= peak[1] < cols.stop, (k, peak)
    inside = cams[k][rows, cols].sum()
    # Bilinear upsampling spreads half a feature pixel (one input pixel) past the quadrant.
    assert inside / cams[k].sum() > 0.75, k
    assert cams[k].max() == pytest.approx(1.0)
  # Default class: the prediction. Quadrant 2 is the brightest, so it is explained.
  bright = np.full((1, 8, 8, 3), 0.3, np.float32)
  bright[0, 4:, :4] = 0.9
  cam = np.asarray(gradcam.grad_cam(net, {}, bright))[0]
  assert np.argmax(net.apply({}, bright)[0]) == 2
  assert cam[4:, :4].min() > 0.5 and cam[:3].max() == 0.0 and cam[:, 5:].max() == 0.0


def _bilinear_half_pixel(m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Bilinear resize with half-pixel centres and edge clamping, by hand (cv2's INTER_LINEAR)."""
  def axis(n_in, n_out):
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0
  r0, r1, wr = axis(m.shape[0], out_h)
  c0, c1, wc = axis(m.shape[1], out_w)
  top = m[r0][:, c0] * (1 - wc) + m[r0][:, c1] * wc
  bottom = m[r1][:, c0] * (1 - wc) + m[r1][:, c1] * wc
  return top * (1 - wr[:, None]) + bottom * wr[:, None]


def _reference_cam(model, variables, image, label):
  """Grad-CAM of one image, step by step: per-image gradient, weights, ReLU, resize, /max."""
  _, feats = model.apply(variables, image[None], return_features=True)
  grad = jax.grad(lambda f: model.apply(variables, f, method="head")[0, label])(feats)
  a, g = np.asarray(feats[0], np.float64), np.asarray(grad[0], np.float64)
  weights = g.mean(axis=(0, 1))
  cam = np.maximum((a * weights).sum(-1), 0.0)
  up = _bilinear_half_pixel(cam, image.shape[0], image.shape[1])
  return up / up.max() if up.max() > 0 else up


@pytest.mark.parametrize("name", ["cnn4", "resnet18"])
def test_equals_a_hand_computed_grad_cam(name):
  model = get_model(name, 10, width=1 / 16)
  x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
  variables = model.init(jax.random.key(2), x[:1])
  if "batch_stats" in variables:   # non-trivial running statistics
    variables = {**variables, "batch_stats": jax.tree.map(
        lambda s: s + 0.1 * jax.random.uniform(jax.random.key(3), s.shape),
        variables["batch_stats"])}
  labels = np.array([3, 0, 7])
  got = np.asarray(gradcam.grad_cam(model, variables, x, labels))
  for i in range(3):
    np.testing.assert_allclose(got[i], _reference_cam(model, variables, x[i], labels[i]),
                               atol=1e-5)
  # The default class is the prediction, and jit gives the same maps.
  pred = np.asarray(jnp.argmax(model.apply(variables, x), -1))
  jitted = jax.jit(lambda v, im: gradcam.grad_cam(model, v, im))(variables, x)
  np.testing.assert_allclose(jitted, gradcam.grad_cam(model, variables, x, pred), atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_gradient_is_finite_on_constant_images(value):
  model = get_model("cnn4", 10, width=1 / 16)
  x = jnp.full((2, 32, 32, 3), value)
  variables = model.init(jax.random.key(0), x[:1])
  cams = gradcam.grad_cam(model, variables, x)
  assert bool(jnp.all(jnp.isfinite(cams))) and float(cams.min()) >= 0 and \
      float(cams.max()) <= 1
  g = jax.grad(lambda im: gradcam.grad_cam(model, variables, im).sum())(x)
  assert bool(jnp.all(jnp.isfinite(g)))
  # An all-zero map (the quadrant net on a black image) stays 0 with a finite gradient.
  black = jnp.zeros((1, 8, 8, 3))
  assert float(jnp.abs(gradcam.grad_cam(_QuadrantNet(), {}, black, jnp.array([0]))).max()) == 0
  g = jax.grad(lambda im: gradcam.grad_cam(_QuadrantNet(), {}, im, jnp.array([0])).sum())(black)
  assert bool(jnp.all(jnp.isfinite(g)))


def test_bad_input_gets_one_sentence():
  model = get_model("cnn4", 10, width=1 / 16)
  x = jnp.zeros((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x[:1])
  with pytest.raises(TypeError, match="astype"):
    gradcam.grad_cam(model, variables, np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
    gradcam.grad_cam(model, variables, x, jnp.array([1, 2, 3]))
  with pytest.raises(TypeError, match="integer labels"):
    gradcam.grad_cam(model, variables, x, jnp.array([1.0, 2.0]))
  with pytest.raises(ValueError, match="blur_radius_224"):
    gradcam.blur_sigma(32, 0.0)


def test_fig4_blur_is_a_scaled_gaussian_with_reflect_padding():
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  sigma = 9 * 32 / 224
  assert gradcam.blur_sigma(32) == pytest.approx(1.2857142857)
  assert gradcam.blur_sigma(224) == 9.0
  # scipy's 'mirror' is torchvision's 'reflect'; radius int(truncate * sigma + 0.5) = 4 = ceil(3 sigma).
  ref = scipy.ndimage.gaussian_filter(np.asarray(x, np.float64), sigma=(0, sigma, sigma, 0),
                                      mode="mirror", truncate=4 / sigma)
  np.testing.assert_allclose(gradcam.fig4_blur(x), ref, atol=1e-5)


def test_pair_scores_against_hand_values():
  a = np.arange(10, dtype=np.float32).reshape(1, 5, 2)[:, ::-1]   # values 9..0, top-2 at 0, 1
  flat = a.reshape(-1)
  b = np.roll(flat, 1).reshape(1, 5, 2)                            # top-2 at positions 1, 2
  s = gradcam.cam_pairs_scores(jnp.asarray(a), jnp.asarray(b))
  # k = ceil(0.2 * 10) = 2; the top-2 sets {p(9), p(8)} and shifted by one share 1 pixel: 1/3.
  assert float(s["iou"][0]) == pytest.approx(1 / 3)
  assert float(s["pearson"][0]) == pytest.approx(np.corrcoef(flat, b.reshape(-1))[0, 1],
                                                 abs=1e-6)
  same = gradcam.cam_pairs_scores(jnp.asarray(a), jnp.asarray(a))
  assert float(same["pearson"][0]) == pytest.approx(1.0) and float(same["iou"][0]) == 1.0
  flip = gradcam.cam_pairs_scores(jnp.asarray(a), jnp.asarray(9 - a))
  assert float(flip["pearson"][0]) == pytest.approx(-1.0) and float(flip["iou"][0]) == 0.0
  const = gradcam.cam_pairs_scores(jnp.asarray(a), jnp.zeros_like(jnp.asarray(a)))
  assert float(const["pearson"][0]) == 0.0 and bool(const["constant"][0])


def test_pair_scores_iou_is_of_the_top_not_the_bottom_20_percent():
  # n = 15, k = ceil(0.2 * 15) = 3. Above, a shift and a flip move the top and the bottom
  # sets alike; here they disagree, per image of a batch of two.
  a = np.arange(15, dtype=np.float32)                 # top-3 at {12, 13, 14}, bottom-3 {0, 1, 2}
  b = np.array([14, 3, 4, 5, 6, 0, 1, 2, 7, 8, 9, 10, 11, 13, 12], np.float32)
  c = np.array([0, 1, 2, 12, 13, 14, 3, 4, 5, 6, 7, 8, 9, 10, 11], np.float32)
  # Row 0: top-3 of b at {0, 13, 14}, 2 shared: 2 / (3 + 3 - 2) = 1/2 (bottom-3 {5, 6, 7}: 0).
  # Row 1: top-3 of c at {3, 4, 5}, none shared: 0 (bottom-3 {0, 1, 2}: all shared, 1).
  first = np.stack([a, a]).reshape(2, 3, 5)
  second = np.stack([b, c]).reshape(2, 3, 5)
  s = gradcam.cam_pairs_scores(jnp.asarray(first), jnp.asarray(second))
  np.testing.assert_allclose(s["iou"], [0.5, 0.0], atol=1e-7)
  np.testing.assert_allclose(s["pearson"], [np.corrcoef(a, b)[0, 1], np.corrcoef(a, c)[0, 1]],
                             atol=1e-6)
  assert not np.asarray(s["constant"]).any()


def _config():
  return tiny.job(num_train_steps=3, checkpoint_every_steps=3, policy=dict(source="init"))


def _numpy_stability(config, model, variables):
  """The score image by image on the host: per-image CAMs, np.corrcoef, argsort top-20%."""
  rs, ious, n = [], [], 0
  for batch in data.eval_iterator(config, "test", batch_size=config.eval_batch_size):
    host = jax.device_get(batch)
    x = host["image"].reshape((-1,) + host["image"].shape[2:])
    y = host["label"].reshape(-1)
    keep = host["mask"].reshape(-1) > 0
    x, y = x[keep], y[keep]
    a = np.asarray(gradcam.grad_cam(model, variables, x, y)).reshape(len(x), -1)
    b = np.asarray(gradcam.grad_cam(model, variables, gradcam.fig4_blur(x), y)).reshape(
        len(x), -1)
    k = math.ceil(0.2 * a.shape[1])
    for u, v in zip(a, b):
      rs.append(np.corrcoef(u, v)[0, 1] if u.std() > 0 and v.std() > 0 else 0.0)
      ta, tb = set(np.argsort(-u, kind="stable")[:k]), set(np.argsort(-v, kind="stable")[:k])
      ious.append(len(ta & tb) / len(ta | tb))
    n += len(x)
  return float(np.mean(rs)), float(np.mean(ious)), n


def _test_images_at(config, indices):
  """The test split's images and labels at ``indices``, in that order."""
  found = {}
  for batch in data.eval_iterator(config, "test", batch_size=config.eval_batch_size):
    host = jax.device_get({k: batch[k] for k in ("image", "label", "index", "mask")})
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in host.items()}
    for image, label, index, mask in zip(flat["image"], flat["label"], flat["index"],
                                         flat["mask"]):
      if mask > 0 and int(index) in indices:
        found[int(index)] = (image, int(label))
  return (np.stack([found[i][0] for i in indices]),
          np.asarray([found[i][1] for i in indices], np.int32))


def _check_panel_columns(drawn, config, wd, indices):
  """Each panel cell shows the image and the CAM (recomputed here) its column title names.

  ``drawn``: (axes, image, cam) of every `_overlay` call of `plot_panel`.
  """
  x, y = _test_images_at(config, indices)
  blurred = np.asarray(gradcam.fig4_blur(x))
  runs = {v: experiment.restore(str(wd / v / "seed_0")) for v in ("standard", "eriep")}
  want = {(v, blur): np.asarray(gradcam.grad_cam(r.model, r.variables, blurred if blur else x,
                                                 y))
          for v, r in runs.items() for blur in (False, True)}
  # The maps a swapped column would show instead differ well beyond the tolerance.
  assert np.abs(want["eriep", True] - want["standard", True]).max() > 0.05
  assert np.abs(want["standard", False] - want["standard", True]).max() > 0.05
  cells = {}
  for ax, image, cam in drawn:
    spec = ax.get_subplotspec()
    cells[spec.rowspan.start, spec.colspan.start] = (ax, image, cam)
  assert sorted(cells) == [(i, j) for i in range(len(indices)) for j in range(5)]
  titles = [cells[0, j][0].get_title() for j in range(5)]
  # Fig. 4's columns, in the order of gradcam_workdir's docstring.
  assert titles == ["original", "standard: CAM",
                    f"blurred (sigma {gradcam.blur_sigma(x.shape[1]):.2f} px)",
                    "eriep: CAM, blurred", "standard: CAM, blurred"]
  for (i, j), (_, image, cam) in cells.items():
    blur = "blurred" in titles[j]
    np.testing.assert_allclose(image, (blurred if blur else x)[i], atol=1e-6, err_msg=titles[j])
    if "CAM" in titles[j]:
      run = titles[j].split(":")[0]
      np.testing.assert_allclose(cam, want[run, blur][i], atol=1e-5, err_msg=titles[j])
    else:
      assert cam is None, titles[j]


def test_gradcam_mode_panel_and_scores_on_a_trained_comparison(tmp_path, monkeypatch):
  c = _config()
  c.compare_methods = ("standard", "eriep")
  c.seeds = (0,)
  c.eval.cam_stability = True
  wd = tmp_path / "cmp"
  with pytest.raises(ValueError, match=r"no trained 'standard' run at seed 0"):
    experiment.gradcam_workdir(c, str(wd))   # nothing trained: refused before any compute
  trained = experiment.run(c, str(wd))
  at_train = trained[str(wd / "eriep" / "seed_0")]["cam_stability"]
  c.gradcam.num_images = 4
  drawn = []
  real_overlay = gradcam._overlay

  def recording(ax, image, cam):   # what plot_panel draws in each cell
    drawn.append((ax, np.asarray(image), None if cam is None else np.asarray(cam)))
    real_overlay(ax, image, cam)

  monkeypatch.setattr(gradcam, "_overlay", recording)
  summary = experiment.gradcam_workdir(c, str(wd))
  assert (wd / "gradcam" / "fig4_panel.png").stat().st_size > 10_000
  n_test = data.get_dataset_info(c).num_test
  assert summary["panel_indices"] == [0, round((n_test - 1) / 3), round(2 * (n_test - 1) / 3),
                                      n_test - 1]
  _check_panel_columns(drawn, c, wd, summary["panel_indices"])
  # The restored run scores exactly what the training-time evaluation scored.
  scores = summary["runs"]["eriep/seed_0"]
  assert scores["pearson"] == pytest.approx(at_train["pearson"], abs=1e-6)
  assert scores["top20_iou"] == pytest.approx(at_train["top20_iou"], abs=1e-6)
  # ... which is the per-image host computation over the whole split.
  run = experiment.restore(str(wd / "eriep" / "seed_0"))
  r, iou, n = _numpy_stability(c, run.model, run.variables)
  assert scores["num_examples"] == n == data.get_dataset_info(c).num_test
  assert scores["pearson"] == pytest.approx(r, abs=1e-4)
  assert scores["top20_iou"] == pytest.approx(iou, abs=1e-4)
  written = json.loads((wd / "eriep" / "seed_0" / "eval" / "results.json").read_text())
  assert written["cam_stability"]["pearson"] == pytest.approx(scores["pearson"])
  assert written["accuracy"] == trained[str(wd / "eriep" / "seed_0")]["accuracy"]
  report = json.loads((wd / "report" / "report.json").read_text())
  assert report["files"]["fig4"] == "fig4_gradcam.png"
  stats = report["summary"]["models"]["cnn4"]["metric_stats"]
  assert stats["eriep"]["cam_pearson"]["mean"] == pytest.approx(scores["pearson"])
  assert "cam_pearson" in (wd / "report" / "report.md").read_text()
