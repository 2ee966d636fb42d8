"""Tests for Table 4's baselines as train-step methods: supcon, unicl, jsd.

The losses themselves are tested against hand-computed values in
test_losses_contrastive.py; here: the library's step (pmap on 2 fake devices ==
one device, finite gradients, the loss falls), supcon's frozen linear stage, and
supcon's two stages end to end through the experiment with restore.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eriep_jax
from eriep_jax import config_checks, experiment, losses
from eriep_jax.models import contrastive
from eriep_jax.train import loop

import tiny

_SHAPE = tiny.IMAGE_SHAPE
_det_perturb, _setup = tiny.det_perturb, tiny.step_setup


def _config(method, **supcon):
  # SGD: linear in the gradient, so pmap == single device to float noise.
  return tiny.config(method=method, optimizer=dict(name="sgd", learning_rate=0.05),
                     supcon=supcon)


def _batch(n=8, seed=3):
  k1, _ = jax.random.split(jax.random.key(seed))
  labels = jnp.asarray([0, 1, 2, 0, 1, 2, 3, 3][:n], jnp.int32)   # repeats: real positives
  return {"image": jax.random.uniform(k1, (n,) + _SHAPE), "label": labels}


def _close(a, b, atol, name):
  chex.assert_trees_all_close(a, b, atol=atol, rtol=atol, custom_message=name)


def _max_change(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                           jax.tree.leaves(b)))


@pytest.mark.parametrize("method, supcon", [
    ("supcon", dict(views="epm")), ("unicl", {}), ("jsd", {})])
def test_pmap_two_devices_equals_single_device(method, supcon):
  """The global batch decides the loss: supcon's negatives and unicl's texts span devices."""
  config = _config(method, **supcon)
  st, single, multi = _setup(config, perturb_fn=_det_perturb)
  batch, key = _batch(), jax.random.PRNGKey(5)
  s1, m1 = single(st, batch, key)
  rst = jax.tree.map(lambda x: jnp.stack([x, x]), st)
  s2, m2 = multi(rst, jax.tree.map(lambda x: x.reshape((2, 4) + x.shape[1:]), batch), key)
  s2 = jax.tree.map(lambda x: x[0], s2)
  _close(s1.params, s2.params, 1e-5, "params")
  _close(s1.batch_stats, s2.batch_stats, 1e-5, "batch_stats")
  for k in ("loss", "grad_norm"):
    np.testing.assert_allclose(m1[k], m2[k][0], rtol=1e-5, atol=1e-5, err_msg=k)
  assert float(m1["finite"]) == 1.0 and float(m1["grad_norm"]) > 0
  assert _max_change(st.params, s1.params) > 1e-5
  # The policy is untouched by the baselines (only eriep trains the EPM).
  _close(st.policy_params.magnitude, s1.policy_params.magnitude, 0.0, "policy")
  if method == "supcon":   # the step's loss is supcon_loss of the model's own embeddings
    model = loop.build_model(config, 10)

    @jax.jit   # one program, not the model's primitives compiled one by one
    def want_loss(st):
      x = _det_perturb(st.policy_params, batch["image"], None, mode="hard")
      (z, _), _ = model.apply({"params": st.params, "batch_stats": st.batch_stats},
                              jnp.concatenate([x, x]), train=True, method="embed",
                              mutable=["batch_stats"])
      return losses.supcon_loss(jnp.stack([z[:8], z[8:]], 1), batch["label"],
                                temperature=0.1, base_temperature=0.07)[0]

    np.testing.assert_allclose(m1["loss"], want_loss(st), rtol=1e-6)


def _jsd_and_unicl_losses_by_hand(config, st, batch, key):
  """The step's jsd / unicl loss from N's outputs and the loss functions, with a wrong twin.

  jsd: one train-mode pass over [x, v1, v2], v1 and v2 the real hard EPM drawn
  with `key` and with fold_in(key, 0x76696577) (the step's second-view salt);
  the twin draws both views with `key`. unicl: unicl_loss of the embeddings
  against each image's row of the class table; the twin takes the row of the
  next class. Each is one jitted program, called for the loss and for its twin.
  """
  model = loop.build_model(config, 10)
  variables = {"params": st.params, "batch_stats": st.batch_stats}
  x, labels = batch["image"], batch["label"]
  if config.method == "jsd":
    @jax.jit
    def loss(second_key):
      v1 = eriep_jax.policy.perturb(st.policy_params, x, key, mode="hard")
      v2 = eriep_jax.policy.perturb(st.policy_params, x, second_key, mode="hard")
      logits, _ = model.apply(variables, jnp.concatenate([x, v1, v2]), train=True,
                              mutable=["batch_stats"])
      return losses.jsd_loss(*jnp.split(logits, 3), labels, weight=config.jsd.weight)[0]
    return loss(jax.random.fold_in(key, 0x76696577)), loss(key)

  @jax.jit
  def loss(rows):
    (z, _), _ = model.apply(variables, x, train=True, method="embed", mutable=["batch_stats"])
    table = model.apply(variables, method="label_embeddings")
    scale = model.apply(variables, method="scale")
    return losses.unicl_loss(z, table[rows], labels, labels, temperature=1.0 / scale)[0]
  return loss(labels), loss((labels + 1) % 10)


@pytest.mark.parametrize("method, supcon", [("supcon", {}), ("unicl", {}), ("jsd", {})])
def test_loss_falls_with_the_real_views_and_epm(method, supcon):
  """A few steps on one batch, with the real SupContrast views / EPM: finite, and falling.

  jsd's and unicl's first loss equals their loss function on N's outputs (to
  rtol 1e-5), and not the loss of two views drawn with one key / of the wrong
  label rows, which differ by more than 1e-3 relative here.
  """
  config = _config(method, **supcon)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  st, single, _ = _setup(config)
  batch = _batch()
  first = None
  losses_seen = []
  for t in range(6):
    if t == 0 and method in ("jsd", "unicl"):
      want, wrong = _jsd_and_unicl_losses_by_hand(config, st, batch, jax.random.PRNGKey(100))
      assert abs(float(want) - float(wrong)) > 1e-3 * abs(float(want)), (want, wrong)
    st, m = single(st, batch, jax.random.PRNGKey(100 + t))
    if t == 0 and method in ("jsd", "unicl"):
      np.testing.assert_allclose(m["loss"], want, rtol=1e-5)
    assert float(m["finite"]) == 1.0 and np.isfinite(float(m["grad_norm"]))
    losses_seen.append(float(m["loss"]))
    first = losses_seen[0] if first is None else first
  assert np.mean(losses_seen[-3:]) < losses_seen[0] - 0.05, losses_seen


def test_supcon_linear_stage_trains_only_the_classifier():
  config = _config("supcon", stage="linear")
  config.optimizer.name = "adam"
  config.optimizer.weight_decay = 0.1   # AdamW: the frozen encoder must not decay either
  st, single, _ = _setup(config)
  batch = _batch()
  new = st
  for t in range(3):
    new, m = single(new, batch, jax.random.PRNGKey(t))
  assert float(m["finite"]) == 1.0
  for name in st.params:
    if name == "linear":
      assert _max_change(st.params[name], new.params[name]) > 1e-4
    else:
      _close(st.params[name], new.params[name], 0.0, name)   # bit-identical
  _close(st.batch_stats, new.batch_stats, 0.0, "batch_stats")   # encoder in inference mode
  # The loss is the CE of the linear head on the frozen encoder's pooled features.
  model = loop.build_model(config, 10)
  logits = model.apply({"params": new.params, "batch_stats": new.batch_stats}, batch["image"])
  _, m = single(new, batch, jax.random.PRNGKey(9))
  np.testing.assert_allclose(m["loss"], jnp.mean(losses.cross_entropy(logits, batch["label"])),
                             rtol=1e-5)


def test_contrastive_models_keep_the_classifier_contract():
  """Logits, features, head (Grad-CAM's path) agree; unicl's logits are scaled cosines."""
  for kind in ("supcon", "unicl"):
    config = _config(kind)
    model = loop.build_model(config, 10)
    v = model.init(jax.random.key(0), jnp.zeros((1,) + _SHAPE))
    x = jax.random.uniform(jax.random.key(1), (3,) + _SHAPE)
    logits, feats = model.apply(v, x, return_features=True)
    np.testing.assert_allclose(model.apply(v, feats, method="head"), logits, rtol=1e-6)
    z, pooled = model.apply(v, x, method="embed")
    np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pooled, feats.mean(axis=(1, 2)), rtol=1e-6)
    if kind == "unicl":
      table = contrastive.l2_normalize(v["params"]["class_embeddings"])
      np.testing.assert_allclose(logits, (1 / 0.07) * z @ table.T, rtol=1e-5, atol=1e-5)
      heat = eriep_jax.evaluate.grad_cam(model, v, x)   # Grad-CAM runs through `head`
      assert heat.shape == (3, 8, 8) and bool(jnp.all(jnp.isfinite(heat)))


@pytest.mark.parametrize("field, value, match", [
    ("supcon.views", "simclr", "supcon.views"),
    ("supcon.temperature", 0.0, "supcon.temperature"),
    ("supcon.linear_epochs", 0, "supcon.linear_epochs"),
    ("contrastive.proj_dim", 0, "contrastive.proj_dim"),
])
def test_bad_baseline_config_is_one_sentence(field, value, match):
  config = _config("supcon")
  group, name = field.split(".")
  config[group][name] = value
  with pytest.raises(ValueError, match=match):
    config_checks.check_config(config, num_devices=1)
  config = _config("jsd")
  config.jsd.weight = -1.0
  with pytest.raises(ValueError, match="jsd.weight"):
    config_checks.check_config(config, num_devices=1)


def test_supcon_two_stages_end_to_end_and_restore(tmp_path):
  """One run: the encoder stage, then the linear stage from it; restore scores the classifier."""
  c = tiny.job(method="supcon")
  res = experiment.train_and_evaluate(c, str(tmp_path / "run"))
  enc = eriep_jax.restore(str(tmp_path / "run" / experiment.SUPCON_ENCODER_DIR))
  run = eriep_jax.restore(str(tmp_path / "run"))
  assert enc.config.supcon.stage == "encoder" and run.config.supcon.stage == "linear"
  assert res["supcon_encoder"]["num_train_steps"] == 4 and run.step == 4
  # The linear stage left the encoder exactly as the contrastive stage trained it.
  _close(enc.variables["params"]["base"], run.variables["params"]["base"], 0.0, "encoder")
  _close(enc.variables["batch_stats"], run.variables["batch_stats"], 0.0, "batch_stats")
  assert _max_change(enc.variables["params"]["linear"], run.variables["params"]["linear"]) > 0
  assert isinstance(run.model, contrastive.ContrastiveNet)
  # The results score the restored classifier: its clean accuracy, counted here by hand
  # (with the restored model's apply, jitted).
  apply = jax.jit(run.model.apply)
  correct = total = 0
  for batch in eriep_jax.data.eval_iterator(c, "test"):
    x = np.asarray(batch["image"]).reshape((-1,) + batch["image"].shape[2:])
    y, mask = np.asarray(batch["label"]).ravel(), np.asarray(batch["mask"]).ravel()
    pred = np.argmax(apply(run.variables, x), -1)
    correct += int(np.sum((pred == y) * mask))
    total += int(mask.sum())
  assert res["num_examples"] == total == 360
  np.testing.assert_allclose(res["accuracy"]["clean"], 100.0 * correct / total, atol=1e-9)
