"""Tests for eriep_jax.policy: the EPM of Section 3.2, Eq. (1).

Shapes are shared between tests (L=3, K=2, the four ops of `SMALL_OPS`,
8 images of 8x8x3) so that the jitted perturb compiles once per mode and is
reused; only two tests use all 17 ops.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import eriep_jax
from eriep_jax import ops
from eriep_jax import policy as P
from eriep_jax.policy import apply as policy_apply

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL_OPS = ("rotate", "solarize", "flip", "cutout")
L, K, B = 3, 2, 8


def _default_config():
  spec = importlib.util.spec_from_file_location("_default_cfg", REPO / "configs" / "default.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _images(b=B, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, 8, 8, 3), minval=0.1, maxval=0.9)


def _small(**kw):
  kw.setdefault("init", "constant")
  return P.init_policy(jax.random.key(0), P.PolicyConfig(num_subpolicies=L, ops=SMALL_OPS, **kw))


def _used_subpolicies(key, batch, num_subpolicies, num_stages, mode="soft"):
  # Soft mode draws the sub-policies from the first half of split(key); hard
  # mode cuts the shuffled batch into shares (assign_subpolicies).
  if mode == "hard":
    return np.asarray(P.assign_subpolicies(key, batch, num_subpolicies))
  key_sub, _ = policy_apply.split_keys(key, num_stages)
  return np.asarray(P.sample_subpolicies(key_sub, batch, num_subpolicies))


_jit_op = {name: jax.jit(ops.get_op(name).fn) for name in SMALL_OPS}


def test_public_names_resolve():
  for name in ("PolicyConfig", "Policy", "init_policy", "perturb", "discretize"):
    assert getattr(eriep_jax, name) is getattr(P, name)
  # The rest of the policy API stays in its subpackage, not in eriep_jax.__all__.
  assert "save_grid" not in eriep_jax.__all__ and callable(eriep_jax.policy.save_grid)
  assert eriep_jax.policy.PolicyParams is P.PolicyParams


def test_config_from_default_py_and_init_values():
  cfg = _default_config()
  from_policy = P.PolicyConfig.from_config(cfg.policy)   # extra fields are ignored
  assert from_policy == P.PolicyConfig()
  assert P.PolicyConfig.from_config(cfg) == from_policy  # a whole experiment config
  assert from_policy.ops == tuple(ops.OPS) and len(from_policy.ops) == 17
  assert (from_policy.init, from_policy.parameterization) == ("uniform", "projected")
  params = P.init_policy(jax.random.key(0), cfg.policy)
  assert params.magnitude.shape == params.probability.shape == params.weight.shape == (10, 2, 17)
  assert params.ops == tuple(ops.OPS)
  assert (params.selection_temperature, params.bernoulli_temperature) == (0.05, 0.1)
  assert params.parameterization == "projected"
  # Only M, P, W are leaves: what jax.grad / optax see.
  assert len(jax.tree.leaves(params)) == 3
  # Faster AutoAugment's start: every p, mu and W uniform in [0, 1], drawn from the key.
  k_mag, k_prob, k_weight = jax.random.split(jax.random.key(0), 3)
  values = P.constrain(params)
  np.testing.assert_array_equal(values.magnitude, jax.random.uniform(k_mag, (10, 2, 17)))
  np.testing.assert_array_equal(values.probability, jax.random.uniform(k_prob, (10, 2, 17)))
  np.testing.assert_array_equal(params.weight, jax.random.uniform(k_weight, (10, 2, 17)))
  for v in (values.magnitude, values.probability, params.weight):
    v = np.asarray(v)
    assert 0 <= v.min() < 0.05 and 0.95 < v.max() <= 1 and abs(v.mean() - 0.5) < 0.05
  assert not np.array_equal(P.init_policy(jax.random.key(1), cfg.policy).weight, params.weight)
  # The named constant start: p = mu = 0.5, W = 0 (uniform selection), whatever the key.
  const = P.init_policy(jax.random.key(0), P.PolicyConfig(init="constant"))
  np.testing.assert_array_equal(P.constrain(const).magnitude, 0.5)
  np.testing.assert_array_equal(P.constrain(const).probability, 0.5)
  np.testing.assert_allclose(P.constrain(const).selection, 1 / 17, rtol=1e-6)
  odd = P.init_policy(jax.random.key(0), {"num_subpolicies": 2, "num_stages": 3, "ops": ["flip"],
                                          "init_probability": 0.2, "init_magnitude": 0.9,
                                          "init": "constant", "learning_rate": 1.0})
  assert odd.weight.shape == (2, 3, 1)
  np.testing.assert_allclose(P.constrain(odd).probability, 0.2, rtol=1e-6)
  np.testing.assert_allclose(P.constrain(odd).magnitude, 0.9, rtol=1e-6)


@pytest.mark.parametrize("field,value,error", [
    ("num_subpolicies", 0, ValueError),
    ("num_stages", 0, ValueError),
    ("num_stages", 1.5, TypeError),
    ("ops", (), ValueError),
    ("ops", ("rotate", "blur"), ValueError),
    ("ops", ("rotate", "rotate"), ValueError),
    ("ops", "rotate", TypeError),
    ("selection_temperature", 0.0, ValueError),
    ("bernoulli_temperature", -0.1, ValueError),
    ("init_probability", 1.5, ValueError),
    ("init_magnitude", -0.1, ValueError),
    ("init", "normal", ValueError),
    ("parameterization", "tanh", ValueError),
])
def test_config_validation_names_the_field(field, value, error):
  with pytest.raises(error, match=field):
    P.PolicyConfig(**{field: value})
  with pytest.raises(error, match=field):
    P.init_policy(jax.random.key(0), {field: value})


def test_init_policy_rejects_bad_key_and_config():
  with pytest.raises(TypeError, match="key"):
    P.init_policy(0, P.PolicyConfig())
  with pytest.raises(TypeError, match="config"):
    P.init_policy(jax.random.key(0), [("num_stages", 2)])


def test_subpolicy_draw_is_uniform_over_a_large_batch():
  num = 10
  draws = np.asarray(P.sample_subpolicies(jax.random.key(7), 20_000, num))
  counts = np.bincount(draws, minlength=num)
  assert counts.size == num and draws.min() == 0 and draws.max() == num - 1
  expected = draws.size / num
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  # Critical value of chi-square with 9 degrees of freedom at alpha = 0.001.
  assert chi2 < 27.877, (chi2, counts)
  np.testing.assert_array_equal(P.sample_subpolicies(jax.random.key(7), 64, 1), 0)


def test_hard_mode_shares_are_balanced_and_each_sample_uniform():
  # B = 8 over L = 3: shares of 2, 3 and 3 samples (floor(j B / L) bounds).
  positions, valid = policy_apply.share_table(8, 3)
  np.testing.assert_array_equal(positions, [[0, 1, 8], [2, 3, 4], [5, 6, 7]])
  np.testing.assert_array_equal(valid.sum(axis=1), [2, 3, 3])
  # More sub-policies than samples: every sample still gets one.
  positions, valid = policy_apply.share_table(2, 5)
  np.testing.assert_array_equal(valid.sum(axis=1), [0, 0, 1, 0, 1])
  draws = np.stack([np.asarray(P.assign_subpolicies(jax.random.key(i), 8, 3))
                    for i in range(3000)])
  for row in draws:
    assert sorted(np.bincount(row, minlength=3)) == [2, 3, 3], row
  # Each sample's sub-policy is uniform: 3000 draws, sd of a share 0.0086.
  freq = np.stack([(draws == l).mean(axis=0) for l in range(3)])
  np.testing.assert_allclose(freq, 1 / 3, atol=0.04)
  # Samples are not tied to a share: sample 0 meets every other sample.
  assert all(np.any(draws[:, 0] == draws[:, j]) for j in range(1, 8))


def test_hard_mode_applies_each_samples_own_subpolicy_ops():
  # Four sub-policies of two deterministic ops each, p = 1, except sub-policy 3
  # (p = 0, identity). Each output must be the sample's own ops with some signs.
  ops_used = ("rotate", "solarize", "flip", "shear_x", "posterize", "invert")
  params = P.init_policy(jax.random.key(0), P.PolicyConfig(num_subpolicies=4, ops=ops_used,
                                                          init="constant"))
  chosen = np.array([[0, 1], [2, 3], [4, 5], [0, 2]])
  weight = np.zeros((4, 2, len(ops_used)), np.float32)
  for l in range(4):
    for k in range(2):
      weight[l, k, chosen[l, k]] = 10.0
  prob = np.ones((4, 2, len(ops_used)), np.float32)
  prob[3] = 0.0
  mags = np.asarray(jax.random.uniform(jax.random.key(1), prob.shape, minval=0.2, maxval=0.9))
  params = params.replace(weight=jnp.asarray(weight), probability=jnp.asarray(prob),
                          magnitude=jnp.asarray(mags))
  x, key = _images(13, seed=4), jax.random.key(21)
  y = np.asarray(P.perturb(params, x, key, mode="hard"))
  used = _used_subpolicies(key, 13, 4, 2, "hard")
  assert set(used) == {0, 1, 2, 3}
  for i in range(13):
    l = used[i]
    if l == 3:
      np.testing.assert_array_equal(y[i], x[i])
      continue
    candidates = []
    for s1 in (1, -1):
      for s2 in (1, -1):
        z = x[i:i + 1]
        for k, sign in ((0, s1), (1, s2)):
          name = ops_used[chosen[l, k]]
          m = mags[l, k, chosen[l, k]] * (sign if ops.get_op(name).symmetric else 1)
          z = ops.get_op(name).fn(z, m)
        candidates.append(np.asarray(z[0]))
    err = min(np.abs(c - y[i]).max() for c in candidates)
    assert err < 1e-5, (i, l, err)


def test_hard_mode_sample_pairing_partners_come_from_the_whole_batch():
  params = P.init_policy(jax.random.key(0), P.PolicyConfig(
      num_subpolicies=4, num_stages=1, ops=("sample_pairing",), init="constant",
      init_probability=1.0, init_magnitude=1.0))
  x = _images(16, seed=2)
  key = jax.random.key(5)
  y = np.asarray(P.perturb(params, x, key, mode="hard"))
  xs = np.asarray(x)
  partner = []
  for i in range(16):
    # y = 0.6 x_i + 0.4 x_j for exactly one j.
    errs = [np.abs(0.6 * xs[i] + 0.4 * xs[j] - y[i]).max() for j in range(16)]
    assert min(errs) < 1e-5, (i, min(errs))
    partner.append(int(np.argmin(errs)))
  assert sorted(partner) == list(range(16))        # a permutation of the batch
  used = _used_subpolicies(key, 16, 4, 1, "hard")
  assert any(used[i] != used[j] for i, j in enumerate(partner))


def test_each_sample_draws_its_own_subpolicy():
  # Sub-policy 1 does nothing (p = 0); 0 and 2 flip with p = 1: which samples
  # changed must match the per-sample draw.
  params = _small()
  flip = SMALL_OPS.index("flip")
  weight = np.zeros((L, K, len(SMALL_OPS)), np.float32)
  weight[:, :, flip] = 10.0
  prob = np.zeros((L, K, len(SMALL_OPS)), np.float32)
  prob[[0, 2], 0, :] = 1.0
  params = params.replace(weight=jnp.asarray(weight), probability=jnp.asarray(prob))
  x, key = _images(), jax.random.key(11)
  flipped = np.asarray(x[:, :, ::-1])
  for mode in ("soft", "hard"):
    used = _used_subpolicies(key, B, L, K, mode)
    assert len(set(used)) > 1
    y = np.asarray(P.perturb(params, x, key, mode=mode))
    for i in range(B):
      np.testing.assert_allclose(y[i], np.asarray(x[i]) if used[i] == 1 else flipped[i],
                                 atol=1e-6, err_msg=f"{mode} sample {i}")


def test_zero_probability_returns_input_unchanged():
  params = _small(init_probability=0.0)
  x, key = _images(), jax.random.key(3)
  for mode in ("soft", "hard"):
    np.testing.assert_array_equal(P.perturb(params, x, key, mode=mode), x)
  np.testing.assert_array_equal(P.perturb(P.discretize(params), x, key), x)
  # p = 0 and p = 1 sit on the bounds of the projected form: the gradients stay
  # finite. (Through the relaxed Bernoulli at T_b = 0.1 p's own gradient all but
  # vanishes there, as in Faster AutoAugment; `constrain` itself passes it, see
  # test_project_clips_only_the_projected_form_and_a_bound_is_not_sticky.)
  for p in (0.0, 1.0, 0.2):
    at = params.replace(probability=jnp.full_like(params.probability, p))
    grads = jax.grad(lambda q: jnp.sum(P.perturb(q, x[:2], key) ** 2))(at)
    for leaf in jax.tree.leaves(grads):
      assert np.isfinite(leaf).all(), p
    if p == 0.2:
      assert np.any(np.asarray(grads.probability) != 0)
  # The sigmoid form stores p = 0 as a -inf logit, also with finite gradients.
  sig = _small(init_probability=0.0, parameterization="sigmoid")
  assert np.all(np.isneginf(np.asarray(sig.probability)))
  np.testing.assert_array_equal(P.perturb(sig, x, key), x)
  grads = jax.grad(lambda q: jnp.sum(P.perturb(q, x[:2], key) ** 2))(sig)
  for leaf in jax.tree.leaves(grads):
    assert np.isfinite(leaf).all()


@pytest.mark.parametrize("name,magnitude", [("rotate", 0.7), ("solarize", 0.3), ("flip", 0.5)])
def test_probability_one_single_op_equals_the_op(name, magnitude):
  params = _small()
  idx = SMALL_OPS.index(name)
  n = len(SMALL_OPS)
  weight = np.zeros((L, K, n), np.float32)
  weight[:, :, idx] = 10.0          # softmax(W / 0.05) is exactly one-hot in float32
  prob = np.ones((L, K, n), np.float32)
  prob[:, 1, :] = 0.0               # stage 2 never applies
  params = params.replace(weight=jnp.asarray(weight), probability=jnp.asarray(prob),
                          magnitude=jnp.full((L, K, n), magnitude, jnp.float32))
  mu = P.constrain(params).magnitude[0, 0, idx]
  np.testing.assert_allclose(mu, magnitude, rtol=1e-6)
  x, key = _images(), jax.random.key(5)
  spec = ops.get_op(name)
  plus = np.asarray(_jit_op[name](x, mu))
  minus = np.asarray(_jit_op[name](x, -mu)) if spec.symmetric else plus
  for mode in ("soft", "hard"):
    y = np.asarray(P.perturb(params, x, key, mode=mode))
    signs = []
    for i in range(B):
      # Each sample gets the op with one fixed sign (symmetric ops only).
      if np.allclose(y[i], plus[i], atol=1e-5):
        signs.append(1)
      else:
        np.testing.assert_allclose(y[i], minus[i], atol=1e-5, err_msg=f"{mode} sample {i}")
        signs.append(-1)
    if spec.symmetric:
      assert set(signs) == {1, -1}, signs
  if not spec.symmetric:
    np.testing.assert_array_equal(P.perturb(params, x, key, mode="hard"), plus)


def test_stages_compose_in_order():
  # Stage 1 solarize (m = 0.5), then stage 2 flip, both with p = 1.
  n = len(SMALL_OPS)
  weight = np.zeros((L, K, n), np.float32)
  weight[:, 0, SMALL_OPS.index("solarize")] = 10.0
  weight[:, 1, SMALL_OPS.index("flip")] = 10.0
  params = _small(init_probability=1.0).replace(weight=jnp.asarray(weight))
  x = _images()
  expected = _jit_op["flip"](_jit_op["solarize"](x, 0.5), 0.0)
  np.testing.assert_array_equal(P.perturb(params, x, jax.random.key(1), mode="hard"), expected)
  np.testing.assert_allclose(P.perturb(params, x, jax.random.key(1)), expected, atol=1e-6)


def test_same_key_same_output_different_key_different_output():
  params = _small()
  x = _images()
  for mode in ("soft", "hard"):
    a = P.perturb(params, x, jax.random.key(1), mode=mode)
    np.testing.assert_array_equal(a, P.perturb(params, x, jax.random.key(1), mode=mode))
    assert not np.array_equal(a, P.perturb(params, x, jax.random.key(2), mode=mode))
  # jit of the public function gives the same values as the eager call.
  jitted = jax.jit(P.perturb, static_argnames="mode")
  np.testing.assert_array_equal(jitted(params, x, jax.random.key(1)),
                                P.perturb(params, x, jax.random.key(1)))
  # A Policy is a pytree of its probabilities and magnitudes: a jit argument.
  policy = P.discretize(params)
  assert len(jax.tree.leaves(policy)) == 2 * L * K
  assert jax.tree.map(lambda v: v, policy) == policy
  np.testing.assert_array_equal(jax.jit(P.perturb)(policy, x, jax.random.key(1)),
                                P.perturb(params, x, jax.random.key(1), mode="hard"))


def test_soft_gradients_all_ops_are_finite_and_reach_used_entries():
  num_sub, batch = 2, 16
  params = P.init_policy(jax.random.key(0), P.PolicyConfig(num_subpolicies=num_sub,
                                                          init="constant"))
  # Nearly uniform selection, so that no softmax weight underflows at T = 0.05.
  params = params.replace(
      weight=0.01 * jax.random.normal(jax.random.key(1), params.weight.shape))
  x = jax.random.uniform(jax.random.key(2), (batch, 8, 8, 3), minval=0.2, maxval=0.8)
  target = jax.random.uniform(jax.random.key(3), x.shape)
  key = jax.random.key(4)

  def loss(p):
    return jnp.mean((P.perturb(p, x, key) - target) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  used = np.zeros(num_sub, bool)
  used[_used_subpolicies(key, batch, num_sub, 2)] = True
  assert used.all()
  has_magnitude = np.array([ops.get_op(n).magnitude_type != "none" for n in params.ops])
  for field in ("magnitude", "probability", "weight"):
    g = np.asarray(getattr(grads, field))
    assert g.shape == (num_sub, 2, 17)
    assert np.isfinite(g).all(), field
  assert (np.asarray(grads.weight) != 0).all()
  assert (np.asarray(grads.probability) != 0).all()
  g_mag = np.asarray(grads.magnitude)
  assert (g_mag[..., has_magnitude] != 0).all()
  # Ops without a magnitude (flip, invert, ...) get exactly no magnitude gradient.
  np.testing.assert_array_equal(g_mag[..., ~has_magnitude], 0.0)


def test_unused_subpolicy_gets_zero_gradient():
  params = _small()
  x, key = _images(2), jax.random.key(9)
  used = set(_used_subpolicies(key, 2, L, K))
  assert len(used) < L
  grads = jax.grad(lambda p: jnp.sum(P.perturb(p, x, key) ** 2))(params)
  for field in ("magnitude", "probability", "weight"):
    g = np.asarray(getattr(grads, field))
    for l in range(L):
      if l not in used:
        np.testing.assert_array_equal(g[l], 0.0, err_msg=field)
      else:
        assert (g[l] != 0).any(), field


def test_hard_mode_equals_discretized_policy_all_ops():
  params = P.init_policy(jax.random.key(0), P.PolicyConfig(num_subpolicies=4))
  ks = jax.random.split(jax.random.key(1), 3)
  params = params.replace(weight=jax.random.normal(ks[0], params.weight.shape),
                          probability=jax.random.uniform(ks[1], params.weight.shape, minval=0.3),
                          magnitude=jax.random.uniform(ks[2], params.weight.shape))
  policy = P.discretize(params)
  assert (policy.num_subpolicies, policy.num_stages) == (4, 2)
  values = P.constrain(params)
  top = np.argmax(np.asarray(params.weight), axis=-1)
  for l in range(4):
    for k in range(2):
      op, p, m = policy[l][k]
      assert op == params.ops[top[l, k]]
      np.testing.assert_allclose(p, values.probability[l, k, top[l, k]], rtol=1e-6)
      np.testing.assert_allclose(m, values.magnitude[l, k, top[l, k]], rtol=1e-6)
  x = _images(16)
  for seed in (3, 4):
    key = jax.random.key(seed)
    hard = P.perturb(params, x, key, mode="hard")
    assert not np.array_equal(hard, x)
    np.testing.assert_array_equal(P.perturb(policy, x, key), hard)
    np.testing.assert_array_equal(P.perturb(policy, x, key, mode="hard"), hard)
    restored = P.Policy.from_json(policy.to_json())
    assert restored == policy
    np.testing.assert_array_equal(P.perturb(restored, x, key), hard)


def test_perturb_validation():
  params, x, key = _small(), _images(), jax.random.key(0)
  with pytest.raises(ValueError, match="images"):
    P.perturb(params, x[0], key)
  with pytest.raises(TypeError, match="images"):
    P.perturb(params, (x * 255).astype(jnp.uint8), key)
  with pytest.raises(ValueError, match="images"):
    P.perturb(params, jnp.zeros((2, 8, 8, 2)), key)
  # Float images in 0..255, the commonest notebook slip: one sentence with the fix, for
  # concrete arrays; under jit the range is the documented contract and not inspected.
  with pytest.raises(ValueError, match=r"values in \[0, 1\], got min 25.* max 2.*`images / 255`"):
    P.perturb(params, x * 255, key)
  with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
    P.perturb(P.discretize(params), np.asarray(x) * 255, key)
  with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
    P.save_grid(params, x * 255, "unused.png", key)
  assert jax.jit(P.perturb)(params, x * 255, key).shape == x.shape
  with pytest.raises(ValueError, match="mode"):
    P.perturb(params, x, key, mode="sharp")
  with pytest.raises(ValueError, match="mode"):
    P.perturb(P.discretize(params), x, key, mode="soft")
  with pytest.raises(TypeError, match="params"):
    P.perturb({"weight": params.weight}, x, key)
  with pytest.raises(TypeError, match="key"):
    P.perturb(params, x, 0)
  with pytest.raises(ValueError, match="magnitude"):
    P.perturb(params.replace(magnitude=params.magnitude[:, :, :2]), x, key)
  with pytest.raises(TypeError, match="traced"):
    jax.jit(P.discretize)(params)


def test_policy_json_summary_and_errors():
  policy = P.Policy([[("rotate", 0.25, 0.5), ("invert", 1.0, 0.0)],
                     [{"op": "cutout", "probability": 0.0, "magnitude": 1.0},
                      ("solarize", 0.5, 0.125)]])
  assert policy.num_subpolicies == 2 and policy.num_stages == 2
  assert policy[0][0] == ("rotate", 0.25, 0.5) and policy[0][0].op == "rotate"
  data = json.loads(policy.to_json())
  assert data["subpolicies"][1][1] == {"op": "solarize", "probability": 0.5, "magnitude": 0.125}
  assert P.Policy.from_json(policy.to_json()) == policy
  assert hash(P.Policy.from_json(policy.to_json(indent=None))) == hash(policy)
  lines = policy.summary().splitlines()
  assert len(lines) == 2 + 4
  assert lines[2].split() == ["1", "1", "rotate", "affine", "0.250", "+/-0.500"]
  assert lines[3].split() == ["1", "2", "invert", "color", "1.000", "-"]
  assert str(policy) == policy.summary()
  with pytest.raises(ValueError, match="op"):
    P.Policy([[("blur", 0.5, 0.5)]])
  with pytest.raises(ValueError, match="probability"):
    P.Policy([[("rotate", 1.5, 0.5)]])
  with pytest.raises(ValueError, match="stages"):
    P.Policy([[("rotate", 0.5, 0.5)], [("rotate", 0.5, 0.5), ("flip", 0.5, 0.5)]])
  with pytest.raises(ValueError, match="JSON"):
    P.Policy.from_json("{not json")
  with pytest.raises(ValueError, match="subpolicies"):
    P.Policy.from_json("{}")


def test_pmap_soft_step_matches_single_device():
  n_dev = jax.local_device_count()
  assert n_dev == 2
  params = _small()
  x = jnp.stack([_images(seed=s) for s in range(n_dev)])       # (2, 8, 8, 8, 3)
  keys = jax.random.split(jax.random.key(0), n_dev)

  def step(p, xb, kb):
    y, vjp = jax.vjp(lambda q: P.perturb(q, xb, kb), p)
    grads = vjp(jnp.ones_like(y))[0]
    return y, jax.lax.pmean(grads, axis_name="batch")

  y, grads = jax.pmap(step, axis_name="batch", in_axes=(None, 0, 0))(params, x, keys)
  for d in range(n_dev):
    np.testing.assert_allclose(y[d], P.perturb(params, x[d], keys[d]), atol=1e-6)
  # The pmean'd gradient is the mean of the per-device gradients, each computed on its own
  # device's images and key outside pmap (a wrong axis, key or reduction fails here).
  per_device = []
  for d in range(n_dev):
    _, vjp = jax.vjp(lambda q, d=d: P.perturb(q, x[d], keys[d]), params)
    per_device.append(vjp(jnp.ones_like(x[d]))[0])
  expected = jax.tree.map(lambda *g: np.mean(np.stack(g), axis=0), *per_device)
  for leaf, want, one in zip(jax.tree.leaves(grads), jax.tree.leaves(expected),
                             jax.tree.leaves(per_device[0])):
    assert np.isfinite(leaf).all()
    np.testing.assert_allclose(leaf[0], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(leaf[1], want, rtol=1e-4, atol=1e-5)
  assert max(float(np.max(np.abs(w - o))) for w, o in zip(
      jax.tree.leaves(expected), jax.tree.leaves(per_device[0]))) > 1e-4   # devices differ


def test_save_grid_writes_png(tmp_path):
  params, x = _small(), _images()
  for i, what in enumerate((params, P.discretize(params))):
    path = tmp_path / f"grid{i}.png"
    assert P.save_grid(what, x, str(path), jax.random.key(0), dpi=50) == str(path)
    img = np.asarray(Image.open(path).convert("RGB"), np.float32)
    # Figure of 1.1 in per image and 1.3 in per row (original + L sub-policies).
    assert img.shape == (round(1.3 * (L + 1) * 50), round(1.1 * B * 50), 3)
    assert img.std() > 10.0
  with pytest.raises(ValueError, match="max_images"):
    P.save_grid(params, x, str(tmp_path / "bad.png"), jax.random.key(0), max_images=0)


def test_random_policy_is_seeded_and_in_the_search_space():
  cfg = P.PolicyConfig(num_subpolicies=6, num_stages=3, ops=("rotate", "invert", "flip", "color"))
  a, b, c = P.random_policy(0, cfg), P.random_policy(0, cfg), P.random_policy(1, cfg)
  assert a == b and a != c
  assert (a.num_subpolicies, a.num_stages) == (6, 3)
  stages = sum(a.subpolicies, ()) + sum(c.subpolicies, ())
  assert all(op.op in cfg.ops for op in stages)
  assert all(0.0 <= op.probability <= 1.0 and 0.0 <= op.magnitude <= 1.0 for op in stages)
  # Uniform draws, not constants: over 36 stages every op appears and p spreads out.
  assert {op.op for op in stages} == set(cfg.ops)
  probs = [op.probability for op in stages]
  assert min(probs) < 0.25 and max(probs) > 0.75
  with pytest.raises(ValueError, match="non-negative int"):
    P.random_policy(-1, cfg)


def test_params_json_round_trip_is_exact():
  params = _small()
  params = params.replace(weight=params.weight + jnp.linspace(-1, 1, params.weight.size).reshape(
      params.weight.shape))
  back = P.params_from_json(P.params_to_json(params))
  for f in ("magnitude", "probability", "weight"):
    np.testing.assert_array_equal(getattr(back, f), getattr(params, f))
  assert (back.ops, back.selection_temperature, back.bernoulli_temperature) == (
      params.ops, params.selection_temperature, params.bernoulli_temperature)
  with pytest.raises(ValueError, match="format 'other' is not .*pass params_to_json"):
    P.params_from_json('{"format": "other"}')
  with pytest.raises(ValueError, match="not policy-params JSON"):
    P.params_from_json('{"format": "eriep_jax.policy_params/v1"}')
  assert back.parameterization == params.parameterization == "projected"


def test_params_json_v1_loads_as_sigmoid_logits():
  # A policy_params.json written before v2 holds sigmoid logits and no parameterization.
  logits = [[[0.0, 2.0]]]
  v1 = json.dumps({"format": "eriep_jax.policy_params/v1", "ops": ["flip", "rotate"],
                   "selection_temperature": 0.05, "bernoulli_temperature": 0.1,
                   "magnitude": logits, "probability": [[[-1.0, 0.5]]], "weight": [[[0.0, 1.0]]]})
  params = P.params_from_json(v1)
  assert params.parameterization == "sigmoid"
  np.testing.assert_array_equal(params.magnitude, np.float32(logits))
  values = P.constrain(params)
  np.testing.assert_allclose(values.magnitude[0, 0], [0.5, 1 / (1 + np.exp(-2.0))], rtol=1e-6)
  np.testing.assert_allclose(values.probability[0, 0], 1 / (1 + np.exp([1.0, -0.5])), rtol=1e-6)
  # Written back, it keeps its form: v2 with parameterization 'sigmoid'.
  again = P.params_from_json(P.params_to_json(params))
  assert again.parameterization == "sigmoid"
  np.testing.assert_array_equal(again.probability, params.probability)
  with pytest.raises(ValueError, match="parameterization 'tanh' is not one of"):
    P.params_from_json(v1.replace('"format": "eriep_jax.policy_params/v1"',
                                  '"format": "eriep_jax.policy_params/v2", '
                                  '"parameterization": "tanh"'))


def _adam_on_mean_p(parameterization, steps=300):
  """p after `steps` Adam steps (the search's settings) on the loss mean(p), from p = 0.5."""
  import optax  # pylint: disable=g-import-not-at-top
  params = _small(parameterization=parameterization)
  tx = optax.adam(1e-3, b1=0.0, b2=0.999)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda q: jnp.mean(P.constrain(q).probability))(params)
    updates, state = tx.update(grads, state, params)
    return P.project(optax.apply_updates(params, updates)), state

  for _ in range(steps):
    params, state = step(params, state)
  return np.asarray(P.constrain(params).probability)


def test_projected_p_moves_from_half_to_0_3_in_300_adam_steps_where_sigmoid_does_not():
  # Adam moves a stored value by ~lr = 1e-3 per step: 0.5 - 300 * 1e-3 = 0.2.
  p = _adam_on_mean_p("projected")
  np.testing.assert_allclose(p, 0.2, atol=2e-3)
  assert p.max() <= 0.3
  # The sigmoid form moves the logit by ~1e-3 per step: p = sigmoid(-0.3) = 0.426.
  p_sig = _adam_on_mean_p("sigmoid")
  np.testing.assert_allclose(p_sig, 1 / (1 + np.exp(0.3)), atol=2e-3)
  assert p_sig.min() > 0.4


def test_project_clips_only_the_projected_form_and_a_bound_is_not_sticky():
  params = _small().replace(probability=jnp.full((L, K, 4), 1.3),
                            magnitude=jnp.full((L, K, 4), -0.2))
  projected = P.project(params)
  np.testing.assert_array_equal(projected.probability, 1.0)
  np.testing.assert_array_equal(projected.magnitude, 0.0)
  np.testing.assert_array_equal(projected.weight, params.weight)
  sig = _small(parameterization="sigmoid").replace(probability=jnp.full((L, K, 4), 1.3))
  np.testing.assert_array_equal(P.project(sig).probability, np.float32(1.3))  # unbounded logits
  # On the bound p = 0, a loss that wants p larger still gets its gradient (-1 / N), so
  # gradient descent takes p back into (0, 1), unlike a clamp that passes no gradient.
  at_zero = _small(init_probability=0.0)
  g = jax.grad(lambda q: -jnp.mean(P.constrain(q).probability))(at_zero).probability
  np.testing.assert_allclose(g, -1.0 / g.size, rtol=1e-6)


def test_movement_hand_computed():
  start = _small(init_probability=0.5, init_magnitude=0.5)
  end = start.replace(probability=start.probability.at[0, 0, 0].set(0.9),
                      magnitude=start.magnitude.at[1, 1, 2].set(0.3),
                      weight=start.weight.at[2, 0, 1].set(-0.5))
  m = P.movement(start, end)
  n = L * K * 4
  np.testing.assert_allclose([m["p_max_change"], m["p_mean_change"]], [0.4, 0.4 / n], rtol=1e-6)
  np.testing.assert_allclose([m["mu_max_change"], m["mu_mean_change"]], [0.2, 0.2 / n],
                             rtol=1e-6)
  np.testing.assert_allclose([m["w_max_change"], m["w_mean_change"]], [0.5, 0.5 / n], rtol=1e-6)
  assert m["selection_max_change"] > 0.2   # W / 0.05 moved one op's weight a lot
  # A sigmoid policy is compared in values, not logits.
  sig = _small(parameterization="sigmoid")
  np.testing.assert_allclose(P.movement(sig, sig.replace(probability=sig.probability + 100.0))[
      "p_max_change"], 0.5, rtol=1e-6)
  with pytest.raises(ValueError, match="compare a policy with its own start"):
    P.movement(start, _small(num_stages=1))


def test_hard_mode_shares_sequential_and_vmapped_give_the_same_images():
  # The CPU runs the shares one after another (one op each), an accelerator vmaps them
  # (every op, then a select): the same draws and the same function, up to float rounding.
  params = P.init_policy(jax.random.key(0), P.PolicyConfig(num_subpolicies=4))
  index, prob, mag = policy_apply.hard_tables(params)
  x = jax.random.uniform(jax.random.key(1), (24, 8, 8, 3))
  outs = [np.asarray(policy_apply._perturb_hard_shares(
      index, prob, mag, x, jax.random.key(3), candidates=params.ops, sequential=s))
          for s in (True, False)]
  assert not np.array_equal(outs[0], np.asarray(x))
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


def test_mix_backward_equals_autodiff_of_the_weighted_sum():
  # perturb_soft mixes the N candidates with `_mix`, whose backward pass is
  # written out; it gives jax.grad of sum_n coef[:, n] * out_n, in the
  # coefficients and in every candidate's output.
  from eriep_jax.policy import apply as apply_lib  # pylint: disable=g-import-not-at-top
  coef = jax.random.uniform(jax.random.key(41), (3, 4))   # also N = 1 below
  outs = [jax.random.uniform(jax.random.key(42 + n), (3, 5, 6, 2)) for n in range(4)]
  weights = jax.random.normal(jax.random.key(49), (3, 5, 6, 2))
  plain = lambda c, *o: sum(c[:, n, None, None, None] * o[n] for n in range(4))
  argnums = tuple(range(5))
  got = jax.grad(lambda *a: jnp.sum(apply_lib._mix(*a) * weights), argnums)(coef, *outs)
  want = jax.grad(lambda *a: jnp.sum(plain(*a) * weights), argnums)(coef, *outs)
  np.testing.assert_allclose(apply_lib._mix(coef, *outs), plain(coef, *outs), rtol=1e-6)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
  one = apply_lib._mix(coef[:, :1], outs[0])                       # a single candidate
  np.testing.assert_allclose(one, coef[:, :1, None, None] * outs[0], rtol=1e-6)


def test_random_ops_draw_for_the_batch_then_apply_the_same_as_with_a_key():
  # perturb_soft draws cutout's centres and sample_pairing's partners once for
  # the whole batch (draw_op) and applies them per chunk (apply_drawn); that
  # must be the op called with the key, and deterministic ops draw nothing.
  x = _images(seed=5)
  m = jnp.linspace(0.1, 0.9, B)
  key = jax.random.key(6)
  for name in ("cutout", "sample_pairing"):
    drawn = policy_apply.draw_op(name, x, key)
    assert drawn.shape[0] == B
    np.testing.assert_array_equal(policy_apply.apply_drawn(name, x, m, drawn),
                                  policy_apply.apply_op(name, x, m, key))
    np.testing.assert_array_equal(
        policy_apply.apply_op(name, x, m, key),
        ops.get_op(name).fn(x, m, key=jax.random.fold_in(key, policy_apply._op_salt(name))))
    # Half of the batch with half of the draw gives half of the result.
    np.testing.assert_array_equal(policy_apply.apply_drawn(name, x[:4], m[:4], drawn[:4]),
                                  policy_apply.apply_op(name, x, m, key)[:4])
  assert policy_apply.draw_op("rotate", x, key) is None


def test_soft_epm_in_chunks_is_the_same_function_as_on_the_whole_batch():
  # On the CPU perturb_soft runs each stage in chunks of the batch, recomputed
  # in the backward pass, keeping only the ops' named statistics. The draws are
  # made for the whole batch, so any chunking gives the same images (bit for
  # bit here) and the same gradients, in the policy and in the images, within
  # float rounding. The ops: both random ones (their draws), two with kept
  # statistics and shear (its one-`where`-per-shift chain).
  names = ("cutout", "sample_pairing", "equalize", "contrast", "shear_x")
  params = P.init_policy(jax.random.key(7), P.PolicyConfig(num_subpolicies=L, ops=names))
  x = _images(seed=8)
  key = jax.random.key(9)
  sub = _used_subpolicies(key, B, L, K)
  weights = jax.random.normal(jax.random.key(10), x.shape)

  def run(chunks):
    def loss(p, im):
      out = policy_apply.perturb_soft(p, im, key, sub, chunks=chunks)
      return jnp.sum(out * weights), out
    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return out, grads

  (whole, (gp1, gx1)), (parts, (gp4, gx4)) = run(1), run(4)
  np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-6)
  assert float(jnp.max(jnp.abs(whole - x))) > 0.05
  for got, want in zip(jax.tree.leaves(gp4), jax.tree.leaves(gp1)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gx4, gx1, rtol=1e-4, atol=1e-6)
  assert float(jnp.max(jnp.abs(gp1.magnitude))) > 1e-3


def test_soft_chunk_count_follows_the_image_bytes_and_rejects_uneven_chunks():
  count = policy_apply._chunk_count
  if jax.default_backend() == "cpu":
    # Chunks of about 32 images of 32x32x3 float32 (SOFT_CHUNK_BYTES).
    assert count(jnp.zeros((128, 32, 32, 3)), None) == 4
    assert count(jnp.zeros((96, 32, 32, 3)), None) == 3
    assert count(jnp.zeros((8, 8, 8, 3)), None) == 1
    assert count(jnp.zeros((6, 128, 128, 3)), None) == 3
    assert count(jnp.zeros((7, 224, 224, 3)), None) == 7    # 11 wanted; a divisor of 7
  assert count(jnp.zeros((8, 8, 8, 3)), 4) == 4
  with pytest.raises(ValueError, match="chunks=3 does not divide the batch of 8"):
    count(jnp.zeros((8, 8, 8, 3)), 3)
  with pytest.raises(ValueError, match="chunks=0 does not divide the batch of 8"):
    P.perturb(_small(), _images(), jax.random.key(0), chunks=0)


def test_own_gradient_is_the_identity_in_value_and_gradient():
  x = jax.random.normal(jax.random.key(11), (3, 4, 5, 2))
  w = jax.random.normal(jax.random.key(12), x.shape)
  np.testing.assert_array_equal(policy_apply._own_gradient(x), x)
  got = jax.grad(lambda v: jnp.sum(jnp.sin(policy_apply._own_gradient(v)) * w))(x)
  np.testing.assert_array_equal(got, jax.grad(lambda v: jnp.sum(jnp.sin(v) * w))(x))
