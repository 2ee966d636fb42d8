"""Tests for the stage-2 state and step: pmap == single device, methods, config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from eriep_jax import config_checks, losses, policy
from eriep_jax.train import loop, state as state_lib, step as step_lib

import tiny

_SHAPE = tiny.IMAGE_SHAPE
_det_perturb, _setup = tiny.det_perturb, tiny.step_setup


def _config(**overrides):
  return tiny.config(**{"sync_freq": 1, **overrides})   # a sync every step unless told


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
  chex.assert_trees_all_close(a, b, atol=atol, rtol=atol, custom_message=name)


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
    ("model.width", 0.0, "width=0.0 for cnn4 must be a positive number"),
    ("data.source", "s3", "unknown data.source 's3'"),
    ("data.name", "not_a_dataset", "unknown TFDS data set 'not_a_dataset'"),
    ("batch_size", 7, "batch_size 7 is not divisible by 2 devices"),
])
def test_bad_config_values(field, value, match):
  c = _config()
  c.data.update(source="tfds", name="cifar10")
  parent, _, leaf = field.rpartition(".")
  setattr(c[parent] if parent else c, leaf, value)
  with pytest.raises(ValueError, match=match):
    config_checks.check_config(c, num_devices=2)
  # The untouched config passes.
  config_checks.check_config(_config(data=dict(source="tfds", name="cifar10")), num_devices=2)


class _DropoutNet(nn.Module):
  """A tiny classifier with dropout, which needs the step's 'dropout' RNG in train mode."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(10)(x)


def test_dropout_rng_is_wired_through_the_step():
  """drop_path_rate / dropout get their own key: no crash, same key same step, new key new."""
  c = _config(method="standard")
  model = _DropoutNet()
  tx = state_lib.make_optimizer(c, 10)
  ptx = state_lib.make_policy_optimizer(c)
  st = state_lib.create_train_state(model, policy.init_policy(jax.random.key(1), c.policy),
                                    jax.random.key(0), image_shape=_SHAPE, tx=tx, policy_tx=ptx)
  step = jax.jit(step_lib.make_train_step(
      c, model=model, tx=tx, policy_tx=ptx,
      learning_rate_fn=state_lib.learning_rate_schedule(c, 10), axis_name=None))
  batch = _batch()
  a, ma = step(st, batch, jax.random.key(0))
  b, _ = step(st, batch, jax.random.key(0))
  d, md = step(st, batch, jax.random.key(1))
  _assert_trees_close(a.params, b.params, 0.0)
  assert float(ma["loss"]) != float(md["loss"])   # other units dropped


def _one_sgd_like_step(name, schedule, weight_decay):
  c = _config(method="standard")
  c.optimizer.name = name
  c.optimizer.schedule = schedule
  c.optimizer.weight_decay = weight_decay
  c.optimizer.learning_rate = 0.1
  c.optimizer.decay_boundaries = (0.5,)
  c.optimizer.decay_factor = 0.1
  return c


def test_step_schedule_and_optimizer_branches_equal_hand_computed():
  """'step' schedule: lr 0.1 then 0.01 at half; sgd+wd and adamw updates by hand."""
  c = _one_sgd_like_step("sgd", "step", 0.0)
  lr = state_lib.learning_rate_schedule(c, 10)
  assert [float(lr(s)) for s in (0, 4, 5, 9)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
  params = {"w": jnp.asarray([1.0, -2.0])}
  grads = {"w": jnp.asarray([0.5, 0.25])}
  # SGD with L2 weight decay 0.01 (added to the gradient), momentum 0.9, first step.
  c = _one_sgd_like_step("sgd", "constant", 0.01)
  tx = state_lib.make_optimizer(c, 10)
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["w"], -0.1 * (np.asarray([0.5, 0.25]) + 0.01 *
                                                np.asarray([1.0, -2.0])), rtol=1e-6)
  # AdamW, first step: m_hat = g, v_hat = g^2, so the Adam part is lr * sign(g) (up to
  # eps), plus the decoupled decay lr * wd * w.
  c = _one_sgd_like_step("adam", "constant", 0.01)
  tx = state_lib.make_optimizer(c, 10)
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["w"], -0.1 * (np.sign([0.5, 0.25]) * np.asarray(
      [0.5, 0.25]) / (np.asarray([0.5, 0.25]) + 1e-8) + 0.01 * np.asarray([1.0, -2.0])),
                             rtol=1e-5)


# ----------------------------------------------------------------------------
# The real soft EPM inside the step (no stand-in).
# ----------------------------------------------------------------------------

# The expected values below are computed under jax.jit: the same functions as op by op,
# where each test spent ~10 s compiling the model's and the EPM's primitives one by one.

def _real_setup(**overrides):
  c = _config(**overrides)   # tiny.OPS: the real EPM on brightness and contrast
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.0
  c.optimizer.learning_rate = 1.0   # params_new = params - grad, so grads are read back exactly
  st, single, multi = _setup(c)
  return c, st, single, multi


def _ce(model, variables, x, labels, *, train=False):
  if train:
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  else:
    logits = model.apply(variables, x, train=False)
  return losses.cross_entropy(logits, labels)


def test_real_epm_soft_for_eriep_and_hard_for_augment():
  """eriep's L_R is R on the soft EPM's x_p; augment trains N on the hard EPM's x_p."""
  batch, key = _batch(), jax.random.key(11)
  c, st, single, _ = _real_setup()
  model = loop.build_model(c, 10)
  _, m = single(st, batch, key)

  @jax.jit
  def expected(policy_params, nvars, rvars):   # arrays only: both states run one program
    soft = policy.perturb(policy_params, batch["image"], key, mode="soft")
    hard = policy.perturb(policy_params, batch["image"], key, mode="hard")
    return (jnp.max(jnp.abs(soft - hard)), _ce(model, rvars, soft, batch["label"]).mean(),
            _ce(model, rvars, hard, batch["label"]).mean(),
            _ce(model, nvars, hard, batch["label"], train=True).mean())

  def variables(st):
    return (st.policy_params, {"params": st.params, "batch_stats": st.batch_stats},
            {"params": st.ref_params, "batch_stats": st.ref_batch_stats})

  soft_hard, l_r_soft, l_r_hard, _ = expected(*variables(st))
  assert float(soft_hard) > 1e-3   # the two branches differ here
  np.testing.assert_allclose(m["l_r"], l_r_soft, rtol=1e-5)
  assert abs(float(m["l_r"]) - float(l_r_hard)) > 1e-6
  assert float(m["policy_grad_norm"]) > 0

  c, st, single, _ = _real_setup(method="augment")
  _, m = single(st, batch, key)
  np.testing.assert_allclose(m["loss"], expected(*variables(st))[3], rtol=1e-5)   # N on hard x_p


def test_real_epm_devices_draw_different_perturbations():
  """Two devices with the same images: L_R is the mean over the two per-device keys."""
  c, st, _, multi = _real_setup()
  model = loop.build_model(c, 10)
  half = _batch(4)
  sharded = jax.tree.map(lambda x: jnp.stack([x, x]), half)
  key = jax.random.key(3)
  _, m = multi(jax.tree.map(lambda x: jnp.stack([x, x]), st), sharded, key)
  rvars = {"params": st.ref_params, "batch_stats": st.ref_batch_stats}
  l_r = jax.jit(lambda d: _ce(model, rvars, policy.perturb(
      st.policy_params, half["image"], jax.random.fold_in(key, d), mode="soft"),
                              half["label"]).mean())
  per_device = [float(l_r(d)) for d in (0, 1)]
  assert abs(per_device[0] - per_device[1]) > 1e-5
  np.testing.assert_allclose(float(m["l_r"][0]), np.mean(per_device), rtol=1e-5)


def test_real_epm_live_reference_adds_the_x_p_gradient_to_n():
  """live - frozen gradient of N = -alpha * grad mean_i s_i L_R,i(theta; x_p), s = sign(L_N - L_R)."""
  batch, key = _batch(), jax.random.key(5)
  grads = {}
  for ref in ("frozen", "live"):
    c, st, single, _ = _real_setup(reference=ref, alpha=0.7)
    s1, _ = single(st, batch, key)
    grads[ref] = jax.tree.map(lambda a, b: a - b, st.params, s1.params)
  model = loop.build_model(c, 10)

  @jax.jit
  def expected_delta():
    x_p = policy.perturb(st.policy_params, batch["image"], key, mode="soft")
    l_n = _ce(model, {"params": st.params, "batch_stats": st.batch_stats}, batch["image"],
              batch["label"], train=True)
    l_r = _ce(model, {"params": st.params, "batch_stats": st.batch_stats}, x_p, batch["label"])
    sign = jnp.sign(l_n - l_r)

    def term(params):
      return -0.7 * jnp.mean(sign * _ce(model, {"params": params, "batch_stats": st.batch_stats},
                                        x_p, batch["label"]))

    return jax.grad(term)(st.params)

  expected = expected_delta()
  delta = jax.tree.map(lambda a, b: a - b, grads["live"], grads["frozen"])
  assert max(float(jnp.max(jnp.abs(e))) for e in jax.tree.leaves(expected)) > 1e-4
  _assert_trees_close(delta, expected, 2e-5, "live - frozen")


def test_batch_reduction_through_the_pmapped_step_equals_single_device():
  """reduction='batch': the sign of the global gap, so 2 devices == 1 device on the batch."""
  config = _config(sync_freq=2, alpha=0.7, reduction="batch")
  config.optimizer.name = "sgd"
  st, single, multi = _setup(config, perturb_fn=_det_perturb)
  st = st.replace(ref_params=jax.tree.map(lambda x: x * 0.9, st.ref_params))
  batch = _batch()
  s1, m1 = single(st, batch, jax.random.key(5))
  sharded = jax.tree.map(lambda x: x.reshape((2, 4) + x.shape[1:]), batch)
  s2, m2 = multi(jax.tree.map(lambda x: jnp.stack([x, x]), st), sharded, jax.random.key(5))
  _assert_trees_close(s1.params, jax.tree.map(lambda x: x[0], s2.params), 1e-5, "params")
  np.testing.assert_allclose(m1["gap"], m2["gap"][0], rtol=1e-5)
  np.testing.assert_allclose(m1["gap"], abs(float(m1["l_n"]) - float(m1["l_r"])), rtol=1e-5)


def test_oracle_trains_n_on_the_evaluations_perturbations_with_its_own_key():
  """oracle's loss is CE of N on perturbations.oracle(x, fold_in(step key, ORACLE_SALT))."""
  from eriep_jax.evaluate import perturbations
  batch, key = _batch(), jax.random.key(12)
  c = _config(method="oracle")
  c.optimizer.name = "sgd"
  model = loop.build_model(c, 10)
  tx = state_lib.make_optimizer(c, 10)
  ptx = state_lib.make_policy_optimizer(c)
  pol = policy.init_policy(jax.random.key(1), c.policy)
  st = state_lib.create_train_state(model, pol, jax.random.PRNGKey(0), image_shape=_SHAPE,
                                    tx=tx, policy_tx=ptx)
  kw = dict(model=model, tx=tx, policy_tx=ptx,
            learning_rate_fn=state_lib.learning_rate_schedule(c, 10), axis_name=None)
  with pytest.raises(ValueError, match="method 'oracle' needs oracle_fn"):
    step_lib.make_train_step(c, **kw)(st, batch, key)
  step = jax.jit(step_lib.make_train_step(c, oracle_fn=perturbations.oracle, **kw))
  new, m = step(st, batch, key)
  nvars = {"params": st.params, "batch_stats": st.batch_stats}
  # One compiled program for both keys' expected losses.
  oracle_loss = jax.jit(lambda k: (jnp.max(jnp.abs(perturbations.oracle(batch["image"], k) -
                                                   batch["image"])),
                                   _ce(model, nvars, perturbations.oracle(batch["image"], k),
                                       batch["label"], train=True).mean()))
  moved, loss = oracle_loss(jax.random.fold_in(key, step_lib.ORACLE_SALT))
  assert float(moved) > 1e-2
  np.testing.assert_allclose(m["loss"], loss, rtol=1e-5)
  # Not the evaluation's key (nor the step key itself): a different draw, a different loss.
  assert abs(float(m["loss"]) - float(oracle_loss(key)[1])) > 1e-6
  # The policy is untouched.
  for a, b in zip(jax.tree.leaves(new.policy_params), jax.tree.leaves(st.policy_params)):
    np.testing.assert_array_equal(a, b)


def test_fixedpolicy_keeps_the_policy_bit_identical_where_eriep_moves_it():
  batch = _batch()
  leaves = {}
  for update in (True, False):
    c, st, single, _ = _real_setup(reference="live", update_policy=update)
    start = jax.tree.leaves(st.policy_params)
    for t in range(3):
      st, m = single(st, batch, jax.random.key(20 + t))
      assert np.isfinite(float(m["loss"]))
    leaves[update] = (start, jax.tree.leaves(st.policy_params))
  start, end = leaves[False]
  for a, b in zip(start, end):
    np.testing.assert_array_equal(a, b)
  start, end = leaves[True]
  assert any(not np.array_equal(a, b) for a, b in zip(start, end))


def test_real_epm_policy_update_descends_l_final():
  """Line 11 with SGD on the EPM: new policy = project(policy - lr * grad_policy L_final).

  L_final is written by hand (N on the clean images, R frozen on the real soft
  EPM's x_p, Eq. (9)); `project` is applied to the expectation too, as the step
  does after its update. A policy update of the wrong sign (gradient ascent)
  lands 2 lr |g| away from it, far outside the 1e-6 tolerance.
  """
  c = _config(alpha=0.7)
  c.optimizer.name = "sgd"
  lr = 1.0   # the gradients are ~1e-3 here; lr 1 makes the step's move readable
  ptx = optax.sgd(lr)
  model = loop.build_model(c, 10)
  tx = state_lib.make_optimizer(c, 10)
  st = state_lib.create_train_state(model, policy.init_policy(jax.random.key(1), c.policy),
                                    jax.random.PRNGKey(0), image_shape=_SHAPE, tx=tx,
                                    policy_tx=ptx)
  st = st.replace(ref_params=jax.tree.map(lambda x: x * 0.9, st.ref_params))   # R != N
  step = jax.jit(step_lib.make_train_step(
      c, model=model, tx=tx, policy_tx=ptx,
      learning_rate_fn=state_lib.learning_rate_schedule(c, 10), axis_name=None))
  batch, key = _batch(), jax.random.key(7)
  new, m = step(st, batch, key)

  nvars = {"params": st.params, "batch_stats": st.batch_stats}
  rvars = {"params": st.ref_params, "batch_stats": st.ref_batch_stats}

  def l_final(policy_params):
    logits, _ = model.apply(nvars, batch["image"], train=True, mutable=["batch_stats"])
    x_p = policy.perturb(policy_params, batch["image"], key, mode="soft")
    logits_r = model.apply(rvars, x_p, train=False)
    return losses.eriep_loss(logits, logits_r, batch["label"], alpha=0.7)[0]

  loss, g = jax.jit(jax.value_and_grad(l_final))(st.policy_params)
  np.testing.assert_allclose(m["loss"], loss, rtol=1e-5)
  want = policy.project(jax.tree.map(lambda p, d: p - lr * d, st.policy_params, g))
  for name in ("magnitude", "probability", "weight"):
    old, got, expected = (getattr(t, name) for t in (st.policy_params, new.policy_params, want))
    # Each leaf moves by 1.6e-3 (W) to 4.6e-3 (mu); the wrong sign would miss by up to twice that.
    assert float(jnp.max(jnp.abs(expected - old))) > 1e-3, name
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0, err_msg=name)
