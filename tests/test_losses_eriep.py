"""Tests for eriep_jax.losses: Eq. (9), its gradient identity, and the sync."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax.training import train_state

from eriep_jax import losses


def _logits(seed, batch=6, classes=4):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(k1, (batch, classes)) * 2.0,
          jax.random.normal(k2, (batch, classes)) * 2.0,
          jax.random.randint(k3, (batch,), 0, classes))


def test_cross_entropy_matches_hand_computed_and_optax():
  logits = jnp.array([[0.0, 0.0], [1.0, 3.0]])
  labels = jnp.array([0, 0])
  got = losses.cross_entropy(logits, labels)
  # -log(1/2) and -log(e/(e+e^3)) = log(1 + e^2).
  np.testing.assert_allclose(got, [np.log(2.0), np.log1p(np.exp(2.0))], rtol=1e-6)
  a, _, y = _logits(0)
  np.testing.assert_allclose(losses.cross_entropy(a, y),
                             optax.softmax_cross_entropy_with_integer_labels(a, y), rtol=1e-6)
  big = jnp.array([[1e4, -1e4]])
  assert np.isfinite(losses.cross_entropy(big, jnp.array([1]))).all()


def test_eriep_loss_values_both_reductions():
  a, b, y = _logits(1)
  l_n = optax.softmax_cross_entropy_with_integer_labels(a, y)
  l_r = optax.softmax_cross_entropy_with_integer_labels(b, y)
  loss, aux = losses.eriep_loss(a, b, y, alpha=0.3)
  np.testing.assert_allclose(loss, l_n.mean() + 0.3 * jnp.abs(l_n - l_r).mean(), rtol=1e-6)
  np.testing.assert_allclose(aux["l_n"], l_n.mean(), rtol=1e-6)
  np.testing.assert_allclose(aux["l_r"], l_r.mean(), rtol=1e-6)
  np.testing.assert_allclose(aux["gap"], jnp.abs(l_n - l_r).mean(), rtol=1e-6)
  np.testing.assert_allclose(aux["frac_ln_gt_lr"], np.mean(l_n > l_r), rtol=1e-6)
  loss_b, aux_b = losses.eriep_loss(a, b, y, alpha=0.3, reduction="batch")
  np.testing.assert_allclose(loss_b, l_n.mean() + 0.3 * jnp.abs(l_n.mean() - l_r.mean()),
                             rtol=1e-6)
  np.testing.assert_allclose(aux_b["gap"], jnp.abs(l_n.mean() - l_r.mean()), rtol=1e-6)
  # Example reduction is never smaller than batch reduction (triangle inequality).
  assert aux["gap"] >= aux_b["gap"] - 1e-5


def test_gradient_identity_frozen_reference_batch_reduction():
  """grad_N L_final = (1 + alpha * sign(L_N - L_R)) * grad_N L_N, within 1e-6."""
  model = nn.Dense(3)
  x = jax.random.normal(jax.random.key(2), (8, 5))
  x_p = x + 0.5 * jax.random.normal(jax.random.key(3), (8, 5))
  y = jnp.arange(8) % 3
  params = model.init(jax.random.key(4), x)
  ref = model.init(jax.random.key(5), x)   # a different, frozen reference
  alpha = 0.7

  def final(p):
    return losses.eriep_loss(model.apply(p, x), model.apply(ref, x_p), y, alpha=alpha,
                             reduction="batch")

  def clean(p):
    return losses.cross_entropy(model.apply(p, x), y).mean()

  (_, aux), g_final = jax.value_and_grad(final, has_aux=True)(params)
  g_clean = jax.grad(clean)(params)
  weight = 1.0 + alpha * jnp.sign(aux["l_n"] - aux["l_r"])
  assert abs(float(aux["l_n"] - aux["l_r"])) > 1e-3   # the sign is well defined
  for gf, gc in zip(jax.tree.leaves(g_final), jax.tree.leaves(g_clean)):
    np.testing.assert_allclose(gf, weight * gc, atol=1e-6)
    assert np.all(np.isfinite(gf))


def test_batch_reduction_across_devices_equals_global():
  """With axis_name, pmean'd local gradients equal the global-batch gradient."""
  assert jax.local_device_count() >= 2
  a, b, y = _logits(6, batch=8)
  w = jnp.array(1.3)

  def global_loss(w):
    return losses.eriep_loss(w * a, b, y, alpha=0.4, reduction="batch")[0]

  def local(w, a, b, y):
    loss, g = jax.value_and_grad(
        lambda w: losses.eriep_loss(w * a, b, y, alpha=0.4, reduction="batch",
                                    axis_name="batch")[0])(w)
    return jax.lax.pmean(loss, "batch"), jax.lax.pmean(g, "batch")

  split = lambda t: t.reshape((2, 4) + t.shape[1:])
  loss_p, g_p = jax.pmap(local, axis_name="batch", in_axes=(None, 0, 0, 0))(
      w, split(a), split(b), split(y))
  np.testing.assert_allclose(loss_p[0], global_loss(w), rtol=1e-6)
  np.testing.assert_allclose(g_p[0], jax.grad(global_loss)(w), rtol=1e-5)


def test_sync_reference_under_jit():
  p = {"w": jnp.ones(3), "b": jnp.zeros(())}
  r = {"w": jnp.full(3, 7.0), "b": jnp.full((), 2.0)}
  sync = jax.jit(losses.sync_reference, static_argnums=3)
  for step, expect in [(0, p), (3, r), (4, p), (8, p), (9, r)]:
    out = sync(p, r, jnp.asarray(step), 4)
    for o, e in zip(jax.tree.leaves(out), jax.tree.leaves(expect)):
      np.testing.assert_array_equal(o, e)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=-0.1), "alpha must be >= 0"),
    (dict(alpha=0.5, reduction="sum"), "unknown reduction"),
])
def test_eriep_loss_bad_options(kwargs, match):
  a, b, y = _logits(7)
  with pytest.raises(ValueError, match=match):
    losses.eriep_loss(a, b, y, **kwargs)


def test_bad_inputs():
  a, b, y = _logits(8)
  with pytest.raises(ValueError, match="same shape"):
    losses.eriep_loss(a, b[:3], y, alpha=0.5)
  with pytest.raises(TypeError, match="integer class indices"):
    losses.cross_entropy(a, y.astype(jnp.float32))
  with pytest.raises(ValueError, match="sync_freq must be an int >= 1"):
    losses.sync_reference({"w": 1.0}, {"w": 2.0}, 0, 0)
  with pytest.raises(ValueError, match="same pytree structure"):
    losses.sync_reference({"w": 1.0}, {"v": 2.0}, 0, 1)


class _TinyNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(16)(x))
    return nn.Dense(3)(x)


def test_own_flax_loop_with_train_state_loss_falls():
  """A user's own loop: flax TrainState + eriep_loss + sync_reference."""
  key = jax.random.key(0)
  centers = jnp.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
  labels = jnp.arange(96) % 3
  x = centers[labels] + 0.6 * jax.random.normal(key, (96, 2))
  model = _TinyNet()
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=model.init(jax.random.key(1), x)["params"],
      tx=optax.adam(1e-2))
  ref_params = state.params                   # R starts as a copy of N
  sync_freq = 5

  @jax.jit
  def step(state, ref_params, key):
    x_p = x + 0.3 * jax.random.normal(key, x.shape)   # a stand-in perturbation

    def loss_fn(params):
      logits_n = state.apply_fn({"params": params}, x)
      logits_r = state.apply_fn({"params": ref_params}, x_p)
      return losses.eriep_loss(logits_n, logits_r, labels, alpha=0.5)

    # Eq. (9) by hand, with optax's cross-entropy: what the loop must be minimising.
    ce = optax.softmax_cross_entropy_with_integer_labels
    ce_n = ce(state.apply_fn({"params": state.params}, x), labels)
    ce_r = ce(state.apply_fn({"params": ref_params}, x_p), labels)
    by_hand = jnp.mean(ce_n) + 0.5 * jnp.mean(jnp.abs(ce_n - ce_r))
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    ref_params = losses.sync_reference(state.params, ref_params, state.step, sync_freq)
    return state, ref_params, loss, dict(aux, by_hand=by_hand, l_n_hand=jnp.mean(ce_n))

  history = []
  for i in range(60):
    state, ref_params, loss, aux = step(state, ref_params, jax.random.fold_in(key, i))
    history.append(float(loss))
    # The loss is L_N + 0.5 |L_N - L_R| (fails with alpha = 0 or a broken gap term).
    np.testing.assert_allclose(float(loss), float(aux["by_hand"]), rtol=1e-5)
    if i in (0, 30):
      assert float(loss) - float(aux["l_n_hand"]) > 1e-3   # the gap term is really there
    if i == 4:   # step count 5 -> R was just synced
      chex.assert_trees_all_equal(ref_params, state.params)
  assert np.all(np.isfinite(history))
  assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
