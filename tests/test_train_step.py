"""Tests for the stage-2 state and step: pmap == single device, methods, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eriep_jax import losses, models, policy
from eriep_jax.train import loop, state as state_lib, step as step_lib

import configs.default as default_config

_SHAPE = (8, 8, 3)


def _config(**overrides):
  c = default_config.get_config()
  c.model.width = 1 / 16
  c.policy.num_subpolicies = 2
  c.batch_size = 8
  c.sync_freq = 1
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def _det_perturb(params, images, key, *, mode):
  """A deterministic, differentiable stand-in for the EPM (layout independent)."""
  del key, mode
  s = jax.nn.sigmoid(jnp.mean(params.magnitude))
  return jnp.clip(images * (0.4 + s) + 0.1 * s, 0.0, 1.0)


def _setup(config, perturb_fn=None):
  model = loop.build_model(config, 10)
  pmodel = loop.build_model(config, 10, bn_axis_name="batch")
  tx = state_lib.make_optimizer(config, 10)
  ptx = state_lib.make_policy_optimizer(config)
  pol = policy.init_policy(jax.random.key(1), config.policy)
  st = state_lib.create_train_state(model, pol, jax.random.PRNGKey(0), image_shape=_SHAPE,
                                    tx=tx, policy_tx=ptx)
  lr_fn = state_lib.learning_rate_schedule(config, 10)
  kw = dict(tx=tx, policy_tx=ptx, learning_rate_fn=lr_fn, perturb_fn=perturb_fn)
  single = jax.jit(step_lib.make_train_step(config, model=model, axis_name=None, **kw))
  multi = jax.pmap(step_lib.make_train_step(config, model=pmodel, axis_name="batch", **kw),
                   axis_name="batch", in_axes=(0, 0, None))
  return st, single, multi


def _batch(n=8):
  k1, k2 = jax.random.split(jax.random.key(3))
  return {"image": jax.random.uniform(k1, (n,) + _SHAPE),
          "label": jax.random.randint(k2, (n,), 0, 10)}


@pytest.fixture(scope="module")
def eriep_setup():
  """One jit and one pmap compile of the eriep step, shared by the tests below."""
  config = _config(sync_freq=2, alpha=0.7)
  # SGD: its update is linear in the gradient. Adam's first step, lr * g / |g|,
  # turns float noise on zero-gradient leaves (conv biases before BN) into +-lr.
  config.optimizer.name = "sgd"
  st, single, multi = _setup(config, perturb_fn=_det_perturb)
  # Make R differ from N so that the frozen reference matters.
  st = st.replace(ref_params=jax.tree.map(lambda x: x * 0.9, st.ref_params))
  return config, st, single, multi


def _assert_trees_close(a, b, atol, name=""):
  a_leaves, b_leaves = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(a_leaves) == len(b_leaves) > 0
  for x, y in zip(a_leaves, b_leaves):
    np.testing.assert_allclose(x, y, atol=atol, rtol=atol, err_msg=name)


def test_pmap_two_devices_equals_single_device(eriep_setup):
  """One pmap step on 2 devices == the single-device step on the global batch."""
  assert jax.local_device_count() == 2
  _, st, single, multi = eriep_setup
  batch = _batch()
  key = jax.random.PRNGKey(5)
  s1, m1 = single(st, batch, key)
  rst = jax.tree.map(lambda x: jnp.stack([x, x]), st)
  sharded = jax.tree.map(lambda x: x.reshape((2, 4) + x.shape[1:]), batch)
  s2, m2 = multi(rst, sharded, key)
  s2 = jax.tree.map(lambda x: x[0], s2)
  for name in ("params", "batch_stats", "ref_params", "policy_params"):
    _assert_trees_close(getattr(s1, name), getattr(s2, name), 1e-5, name)
  # The optimizer states hold raw gradients (momentum trace, Adam moments) of
  # size ~1: float32 sums in another order agree to ~1e-5 relative, not absolute.
  for name in ("opt_state", "policy_opt_state"):
    _assert_trees_close(getattr(s1, name), getattr(s2, name), 1e-4, name)
  for k in m1:
    np.testing.assert_allclose(m1[k], m2[k][0], atol=1e-5, rtol=1e-5, err_msg=k)
  # The step changed something: params and BN running statistics moved.
  for before, after in ((st.params, s1.params), (st.batch_stats, s1.batch_stats)):
    assert max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))) > 1e-5
  assert float(m1["policy_grad_norm"]) > 0


def test_eriep_step_matches_hand_written_loss_and_sync(eriep_setup):
  """N's update is SGD on grad of Eq. (9) with R frozen; R <- N at step sync_freq."""
  config, st, single, _ = eriep_setup
  model = loop.build_model(config, 10)
  batch = _batch()
  x_p = _det_perturb(st.policy_params, batch["image"], None, mode="soft")

  @jax.jit
  def final(params):
    logits, _ = model.apply({"params": params, "batch_stats": st.batch_stats}, batch["image"],
                            train=True, mutable=["batch_stats"])
    logits_r = model.apply({"params": st.ref_params, "batch_stats": st.ref_batch_stats}, x_p,
                           train=False)
    return losses.eriep_loss(logits, logits_r, batch["label"], alpha=config.alpha)[0]

  loss, grads = jax.value_and_grad(final)(st.params)
  s1, m1 = single(st, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(m1["loss"], loss, rtol=1e-5)
  lr = config.optimizer.learning_rate
  _assert_trees_close(s1.params, jax.tree.map(lambda p, g: p - lr * g, st.params, grads), 1e-6)
  _assert_trees_close(s1.ref_params, st.ref_params, 0.0, "R frozen at step 1")
  assert int(s1.step) == 1
  s2, _ = single(s1, batch, jax.random.PRNGKey(1))
  # XLA may recompute a value inside two fusions, so allow float32 rounding.
  _assert_trees_close(s2.ref_params, s2.params, 1e-7, "R <- N at step 2")
  _assert_trees_close(s2.ref_batch_stats, s2.batch_stats, 1e-7, "R's BN <- N's at step 2")


def test_non_finite_loss_keeps_state(eriep_setup):
  _, st, single, _ = eriep_setup
  batch = _batch()
  batch["image"] = batch["image"].at[0, 0, 0, 0].set(jnp.nan)
  s1, m1 = single(st, batch, jax.random.PRNGKey(0))
  assert float(m1["finite"]) == 0.0
  _assert_trees_close(s1, st, 0.0, "state unchanged")


@pytest.mark.parametrize("overrides", [dict(reference="live"), dict(method="augment")])
def test_live_reference_and_augment(overrides):
  """live: gradients reach N through x_p too; augment: N on x_p, the policy untouched."""
  config = _config(**overrides)
  config.optimizer.name = "sgd"
  st, single, _ = _setup(config, perturb_fn=_det_perturb)
  batch = _batch()
  s1, m1 = single(st, batch, jax.random.PRNGKey(0))
  assert float(m1["finite"]) == 1.0 and np.isfinite(float(m1["loss"]))
  if config.method == "augment":
    _assert_trees_close(s1.policy_params, st.policy_params, 0.0, "policy untouched")
    # N saw x_p: the loss is CE of N on the perturbed images.
    model = loop.build_model(config, 10)
    x_p = _det_perturb(st.policy_params, batch["image"], None, mode="hard")
    logits, _ = model.apply({"params": st.params, "batch_stats": st.batch_stats}, x_p,
                            train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(m1["loss"], losses.cross_entropy(logits, batch["label"]).mean(),
                               rtol=1e-5)
  else:
    assert float(m1["policy_grad_norm"]) > 0
    # R = N's current params: L_R is N's loss on x_p, in inference mode.
    model = loop.build_model(config, 10)
    x_p = _det_perturb(st.policy_params, batch["image"], None, mode="soft")
    logits_r = model.apply({"params": st.params, "batch_stats": st.batch_stats}, x_p)
    np.testing.assert_allclose(m1["l_r"], losses.cross_entropy(logits_r, batch["label"]).mean(),
                               rtol=1e-5)


@pytest.mark.parametrize("field, value, match", [
    ("alpha", -0.5, "alpha=-0.5 must be a finite number >= 0"),
    ("sync_freq", 0, "sync_freq=0 must be an int >= 1"),
    ("method", "mixup", "unknown method 'mixup'"),
    ("reference", "ema", "unknown reference 'ema'"),
    ("model.name", "resnet7", "unknown model 'resnet7'"),
    ("data.source", "s3", "unknown data.source 's3'"),
    ("data.name", "not_a_dataset", "unknown TFDS dataset 'not_a_dataset'"),
    ("batch_size", 7, "batch_size 7 is not divisible by 2 devices"),
])
def test_bad_config_values(field, value, match):
  c = _config()
  c.data.source = "tfds"
  parent, _, leaf = field.rpartition(".")
  setattr(c[parent] if parent else c, leaf, value)
  with pytest.raises(ValueError, match=match):
    loop.check_config(c, num_devices=2)
  # The untouched config passes.
  loop.check_config(_config(), num_devices=2)
