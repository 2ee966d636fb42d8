"""Tests for the comparison losses in eriep_jax.losses: SupCon, UniCL and AugMix's JSD."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eriep_jax import losses

# Jitted once per shape: much faster on a busy CPU than op-by-op dispatch.
_supcon = jax.jit(losses.supcon_loss)
_unicl = jax.jit(losses.unicl_loss)
_jsd = jax.jit(losses.jsd_loss)


def _normalize(x):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _unit(key, shape):
  return _normalize(jax.random.normal(key, shape))


def _supcon_reference(features, labels, temperature, base_temperature):
  """Khosla et al. Eq. (2) with SupContrast's scaling, one anchor at a time, in float64."""
  features = np.asarray(features, np.float64)
  b, v, d = features.shape
  z = features.reshape(b * v, d)
  ids = np.repeat(np.arange(b) if labels is None else np.asarray(labels), v)
  per_anchor = []
  for a in range(len(z)):
    others = [c for c in range(len(z)) if c != a]
    denom = sum(math.exp(z[a] @ z[c] / temperature) for c in others)
    positives = [p for p in others if ids[p] == ids[a]]
    if not positives:
      per_anchor.append(0.0)
      continue
    log_probs = [math.log(math.exp(z[a] @ z[p] / temperature) / denom) for p in positives]
    per_anchor.append(-(temperature / base_temperature) * sum(log_probs) / len(positives))
  return float(np.mean(per_anchor))


# --- SupCon. ---


def _hand_batch():
  # Image 0: views x0, x0'; image 1: views x1, x1'. Dot products:
  # x0.x0' = 0.6, x0.x1 = 0, x0.x1' = -0.8, x0'.x1 = 0.8, x0'.x1' = 0, x1.x1' = 0.6.
  return jnp.array([[[1.0, 0.0], [0.6, 0.8]],
                    [[0.0, 1.0], [-0.8, 0.6]]])


def test_supcon_hand_computed_simclr():
  t, bt = 0.1, 0.07
  # Anchors x0 and x1' see logits {6 (positive), 0, -8}; x0' and x1 see {6 (positive), 8, 0}.
  l_a = math.log(math.exp(6.0) + math.exp(0.0) + math.exp(-8.0)) - 6.0
  l_b = math.log(math.exp(6.0) + math.exp(8.0) + math.exp(0.0)) - 6.0
  expected = (t / bt) * (2 * l_a + 2 * l_b) / 4
  loss, aux = _supcon(_hand_batch(), temperature=t, base_temperature=bt)
  np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-6)
  assert float(aux["positives_per_anchor"]) == 1.0
  assert float(aux["frac_anchors_without_positive"]) == 0.0
  # Labels [0, 1] mark the same positives; so does one view each of 4 images
  # labelled [0, 0, 1, 1].
  loss_l, _ = _supcon(_hand_batch(), jnp.array([0, 1]))
  np.testing.assert_allclose(loss_l, expected, rtol=1e-6, atol=1e-6)
  loss_v1, _ = _supcon(_hand_batch().reshape(4, 1, 2), jnp.array([0, 0, 1, 1]))
  np.testing.assert_allclose(loss_v1, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("with_labels", [True, False])
def test_supcon_matches_numpy_loop_reference(with_labels):
  features = _unit(jax.random.key(0), (6, 2, 5))
  labels = jnp.array([0, 1, 0, 2, 1, 3]) if with_labels else None
  loss, aux = _supcon(features, labels, temperature=0.2, base_temperature=0.07)
  ref = _supcon_reference(features, labels, 0.2, 0.07)
  np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-5)
  # Each vector: its other view, plus both views of each other same-label image.
  expected_pos = np.mean([3, 3, 3, 1, 3, 1] if with_labels else [1] * 6)
  np.testing.assert_allclose(aux["positives_per_anchor"], expected_pos, rtol=1e-6)
  eager = losses.supcon_loss(features, labels, temperature=0.2, base_temperature=0.07)[0]
  np.testing.assert_allclose(loss, eager, rtol=1e-6)   # jit == eager


def test_supcon_anchors_without_positives_give_zero():
  """The documented result: an anchor without positive adds 0 and still counts."""
  features = _unit(jax.random.key(1), (5, 1, 4))
  loss, aux = _supcon(features, jnp.arange(5))
  assert float(loss) == 0.0
  assert float(aux["frac_anchors_without_positive"]) == 1.0
  assert float(aux["positives_per_anchor"]) == 0.0
  # Labels [0, 0, 1, 2, 3]: anchors 0 and 1 have a positive, 2-4 add 0 to the mean of 5.
  labels = jnp.array([0, 0, 1, 2, 3])
  loss, aux = _supcon(features, labels, temperature=0.5, base_temperature=0.5)
  z = np.asarray(features[:, 0], np.float64)
  pair = [math.log(sum(math.exp(z[a] @ z[c] / 0.5) for c in range(5) if c != a))
          - z[0] @ z[1] / 0.5 for a in (0, 1)]
  np.testing.assert_allclose(loss, sum(pair) / 5, rtol=1e-5)
  np.testing.assert_allclose(aux["frac_anchors_without_positive"], 0.6, rtol=1e-6)


@pytest.mark.parametrize("features, temperature", [
    (jnp.full((3, 2, 4), 0.5), 0.1),                                   # all equal
    (jnp.zeros((3, 2, 4)), 0.1),                                       # all zero
    (jnp.array([[[1.0, 0.0], [-1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]]), 1e-3),  # logits +-1000
])
def test_supcon_finite_gradients(features, temperature):
  for labels in (None, jnp.arange(features.shape[0]) % 2):
    loss, grad = jax.jit(jax.value_and_grad(
        lambda f: _supcon(f, labels, temperature=temperature)[0]))(features)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))
  # A single vector in all: no contrast set, no positive, loss 0 with a finite gradient.
  grad = jax.jit(jax.grad(lambda f: _supcon(f, jnp.array([0]))[0]))(jnp.ones((1, 1, 3)))
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("with_labels", [True, False])
def test_supcon_pmap_equals_global_batch(with_labels):
  """pmean of the local losses and gradients equals the single-device ones on all 8 images."""
  assert jax.local_device_count() >= 2
  kx, kw = jax.random.split(jax.random.key(2))
  x = jax.random.normal(kx, (8, 2, 5))
  w = jax.random.normal(kw, (5, 3))
  labels = jnp.array([0, 1, 0, 2, 1, 1, 3, 0])

  def loss_fn(w, x, y, axis_name=None):
    return losses.supcon_loss(_normalize(x @ w), y if with_labels else None,
                              temperature=0.2, axis_name=axis_name)[0]

  def local(w, x, y):
    loss, g = jax.value_and_grad(loss_fn)(w, x, y, "batch")
    return jax.lax.pmean(loss, "batch"), jax.lax.pmean(g, "batch")

  split = lambda t: t.reshape((2, 4) + t.shape[1:])
  loss_p, g_p = jax.pmap(local, axis_name="batch", in_axes=(None, 0, 0))(
      w, split(x), split(labels))
  loss_g, g_g = jax.jit(jax.value_and_grad(loss_fn))(w, x, labels)
  np.testing.assert_allclose(loss_p[0], loss_g, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(g_p[0], g_g, rtol=1e-5, atol=1e-5)


# --- UniCL. ---


def test_unicl_i2t_is_cross_entropy_over_class_embeddings():
  """(a) With each class embedding once, L_i2t is softmax CE; absent classes add 0 to L_t2i."""
  ku, kv = jax.random.split(jax.random.key(3))
  u, v = _unit(ku, (6, 4)), _unit(kv, (3, 4))
  labels = jnp.array([0, 0, 2, 2, 0, 2])   # class 1 has no image
  t = 0.2
  loss, aux = _unicl(u, v, labels, jnp.arange(3), temperature=t)
  logits = u @ v.T / t
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(aux["i2t"], ce, rtol=1e-6, atol=1e-6)
  log_p_cols, y = np.asarray(jax.nn.log_softmax(logits, axis=0)), np.asarray(labels)
  t2i = -(log_p_cols[y == 0, 0].mean() + 0.0 + log_p_cols[y == 2, 2].mean()) / 3
  np.testing.assert_allclose(aux["t2i"], t2i, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(loss, aux["i2t"] + aux["t2i"], rtol=1e-6)


def test_unicl_i2t_is_supcon_with_a_second_view():
  """(b) Texts = second views, label_ids = labels: L_i2t is Khosla's L_out^sup from view 1."""
  k1, k2 = jax.random.split(jax.random.key(4))
  z1, z2 = _unit(k1, (6, 5)), _unit(k2, (6, 5))
  labels = jnp.array([0, 1, 0, 2, 1, 0])
  t = 0.3
  _, aux = _unicl(z1, z2, labels, labels, temperature=t)
  a, c, y = np.asarray(z1, np.float64), np.asarray(z2, np.float64), np.asarray(labels)
  per_anchor = []
  for i in range(6):
    denom = sum(math.exp(a[i] @ c[k] / t) for k in range(6))
    positives = [p for p in range(6) if y[p] == y[i]]
    per_anchor.append(-sum(math.log(math.exp(a[i] @ c[p] / t) / denom) for p in positives)
                      / len(positives))
  np.testing.assert_allclose(aux["i2t"], np.mean(per_anchor), rtol=1e-5, atol=1e-6)


def test_unicl_distinct_labels_is_clip():
  """(c) One distinct label per pair, T = B: CE(S, arange) + CE(S.T, arange)."""
  k1, k2 = jax.random.split(jax.random.key(5))
  u, v = _unit(k1, (5, 4)), _unit(k2, (5, 4))
  labels = jnp.array([7, 3, 0, 9, 4])
  t = 0.1
  loss, aux = _unicl(u, v, labels, labels, temperature=t)
  s = u @ v.T / t
  target = jnp.arange(5)
  i2t = optax.softmax_cross_entropy_with_integer_labels(s, target).mean()
  t2i = optax.softmax_cross_entropy_with_integer_labels(s.T, target).mean()
  np.testing.assert_allclose(aux["i2t"], i2t, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(aux["t2i"], t2i, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(loss, i2t + t2i, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("u, v", [
    (jnp.zeros((4, 3)), jnp.zeros((4, 3))),
    (jnp.full((4, 3), 0.5), jnp.full((4, 3), 0.5)),
])
def test_unicl_finite_gradients(u, v):
  labels = jnp.array([0, 1, 0, 2])
  ids = jnp.array([0, 1, 3, 2])   # text 2 and image 2 have no positive

  def loss_fn(u, v, logit_scale):
    return _unicl(u, v, labels, ids, temperature=jnp.exp(-logit_scale))[0]

  loss, grads = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2)))(
      u, v, jnp.log(1 / 0.07))
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_unicl_pmap_equals_global_batch():
  """Shared params (projection, class table, logit scale): pmean'd loss and grads == global."""
  assert jax.local_device_count() >= 2
  kx, kw, kt = jax.random.split(jax.random.key(6), 3)
  x = jax.random.normal(kx, (8, 5))
  labels = jnp.array([0, 1, 0, 2, 1, 1, 3, 0])
  params = {"w": jax.random.normal(kw, (5, 3)), "table": jax.random.normal(kt, (4, 3)),
            "logit_scale": jnp.log(1 / 0.2)}

  def loss_fn(params, x, y, axis_name=None):
    u = _normalize(x @ params["w"])
    v = _normalize(params["table"][y])
    return losses.unicl_loss(u, v, y, y, temperature=jnp.exp(-params["logit_scale"]),
                             axis_name=axis_name)[0]

  def local(params, x, y):
    loss, g = jax.value_and_grad(loss_fn)(params, x, y, "batch")
    return jax.lax.pmean(loss, "batch"), jax.lax.pmean(g, "batch")

  split = lambda t: t.reshape((2, 4) + t.shape[1:])
  loss_p, g_p = jax.pmap(local, axis_name="batch", in_axes=(None, 0, 0))(
      params, split(x), split(labels))
  loss_g, g_g = jax.jit(jax.value_and_grad(loss_fn))(params, x, labels)
  np.testing.assert_allclose(loss_p[0], loss_g, rtol=1e-5, atol=1e-5)
  for key in params:
    np.testing.assert_allclose(g_p[key][0], g_g[key], rtol=1e-5, atol=1e-5, err_msg=key)


# --- AugMix's Jensen-Shannon consistency. ---


def test_jsd_zero_when_views_agree():
  logits = jax.random.normal(jax.random.key(7), (4, 5)) * 3.0
  labels = jnp.array([0, 4, 2, 2])
  loss, aux = _jsd(logits, logits, logits, labels)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-6)
  np.testing.assert_allclose(aux["js"], 0.0, atol=1e-6)
  np.testing.assert_allclose(loss, ce, rtol=1e-6, atol=1e-6)


def test_jsd_hand_computed():
  # p_clean = (1/2, 1/2), p_aug1 = (3/4, 1/4), p_aug2 = (1/4, 3/4), so M = (1/2, 1/2).
  clean = jnp.array([[0.0, 0.0]])
  aug1 = jnp.array([[math.log(3.0), 0.0]])
  aug2 = jnp.array([[0.0, math.log(3.0)]])
  kl_aug = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)   # KL(p_aug || M)
  js = (0.0 + kl_aug + kl_aug) / 3
  ce = math.log(2.0)
  loss, aux = _jsd(clean, aug1, aug2, jnp.array([0]), weight=12.0)
  np.testing.assert_allclose(aux["js"], js, rtol=1e-6)
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-6)
  np.testing.assert_allclose(loss, ce + 12.0 * js, rtol=1e-6)


def test_jsd_uneven_views_hand_computed():
  # Above, p_clean = M, so KL(p_clean || M) = 0 and a JS without the clean view (or with
  # M = (p_aug1 + p_aug2) / 2) gives the same figure. Here p_clean != M:
  # p_clean = (.6, .3, .1), p_aug1 = (.2, .5, .3), p_aug2 = (.1, .1, .8), so M = (.3, .3, .4).
  p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
  clean, aug1, aug2 = (jnp.asarray(np.log(p[k])[None], jnp.float32) for k in range(3))
  kl_clean = 0.6 * math.log(2) + 0.1 * math.log(0.25)                                # 0.4 ln 2
  kl_aug1 = 0.2 * math.log(2 / 3) + 0.5 * math.log(5 / 3) + 0.3 * math.log(0.75)
  kl_aug2 = 0.2 * math.log(1 / 3) + 0.8 * math.log(2)
  js = (kl_clean + kl_aug1 + kl_aug2) / 3          # 0.23336; 0.14094 without the clean KL,
  ce = -math.log(0.3)                              # 0.31392 with M = (p_aug1 + p_aug2) / 2
  loss, aux = _jsd(clean, aug1, aug2, jnp.array([1]), weight=12.0)
  np.testing.assert_allclose(aux["js"], js, rtol=1e-5)
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(loss, ce + 12.0 * js, rtol=1e-5)


def _jsd_reference(clean, aug1, aug2, labels, weight):
  """AugMix's loss row by row in float64: CE(clean) + weight * mean (1/3) sum_k KL(p_k || M)."""
  def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()
  ces, jss = [], []
  for row, label in enumerate(labels):
    p = [softmax(np.asarray(x[row], np.float64)) for x in (clean, aug1, aug2)]
    m = (p[0] + p[1] + p[2]) / 3
    jss.append(sum(np.sum(pk * np.log(pk / m)) for pk in p) / 3)
    ces.append(-math.log(p[0][label]))
  return np.mean(ces) + weight * np.mean(jss), np.mean(ces), np.mean(jss)


def test_jsd_matches_numpy_reference_on_random_logits():
  k1, k2, k3 = jax.random.split(jax.random.key(9), 3)
  logits = [2.0 * jax.random.normal(k, (5, 4)) for k in (k1, k2, k3)]
  labels = jnp.array([0, 3, 1, 2, 3])
  loss, aux = _jsd(*logits, labels, weight=5.0)
  ref_loss, ref_ce, ref_js = _jsd_reference(*logits, np.asarray(labels), 5.0)
  assert ref_js > 0.05   # far from 0, so a missing term shows
  np.testing.assert_allclose(aux["js"], ref_js, rtol=1e-5)
  np.testing.assert_allclose(aux["ce"], ref_ce, rtol=1e-5)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e4])
def test_jsd_finite_gradients(scale):
  k1, k2, k3 = jax.random.split(jax.random.key(8), 3)
  logits = [jax.random.normal(k, (3, 4)) * scale for k in (k1, k2, k3)]
  labels = jnp.array([0, 1, 3])
  loss, grads = jax.jit(jax.value_and_grad(
      lambda a, b, c: _jsd(a, b, c, labels)[0], argnums=(0, 1, 2)))(*logits)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in grads)


# --- Bad inputs. ---


_F = jnp.zeros((4, 2, 3))
_U = jnp.zeros((4, 3))


@pytest.mark.parametrize("fn, error, match", [
    (lambda: losses.supcon_loss(jnp.zeros((4, 3))), ValueError, "views"),
    (lambda: losses.supcon_loss(jnp.zeros((4, 1, 3))), ValueError, "2 views"),
    (lambda: losses.supcon_loss(_F, jnp.zeros((4, 2), jnp.int32)), ValueError, r"\(4,\)"),
    (lambda: losses.supcon_loss(_F, jnp.zeros(4)), TypeError, "integers"),
    (lambda: losses.supcon_loss(jnp.zeros((4, 2, 3), jnp.int32)), TypeError, "float"),
    (lambda: losses.supcon_loss(_F, temperature=0.0), ValueError, "temperature"),
    (lambda: losses.supcon_loss(_F, base_temperature=-1.0), ValueError, "base_temperature"),
    (lambda: losses.unicl_loss(_U, jnp.zeros((4, 5)), jnp.arange(4), jnp.arange(4),
                               temperature=0.1), ValueError, "embedding size"),
    (lambda: losses.unicl_loss(_F, _U, jnp.arange(4), jnp.arange(4), temperature=0.1),
     ValueError, "image_embeddings"),
    (lambda: losses.unicl_loss(_U, _U, jnp.arange(3), jnp.arange(4), temperature=0.1),
     ValueError, "image_labels"),
    (lambda: losses.unicl_loss(_U, _U, jnp.arange(4), jnp.zeros(4), temperature=0.1),
     TypeError, "label_ids"),
    (lambda: losses.unicl_loss(_U, _U, jnp.arange(4), jnp.arange(4), temperature=-0.1),
     ValueError, "temperature"),
    (lambda: losses.unicl_loss(_U, _U, jnp.arange(4), jnp.arange(4), temperature=jnp.ones(2)),
     ValueError, "scalar"),
    (lambda: losses.jsd_loss(_U, _U, jnp.zeros((4, 4)), jnp.arange(4)), ValueError,
     "same shape"),
    (lambda: losses.jsd_loss(_U, _U, _U, jnp.arange(4), weight=-1.0), ValueError, "weight"),
    (lambda: losses.jsd_loss(_U, _U, _U, jnp.zeros(4)), TypeError, "integer"),
])
def test_bad_inputs_raise(fn, error, match):
  with pytest.raises(error, match=match):
    fn()
