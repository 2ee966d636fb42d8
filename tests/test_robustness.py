"""Tests for eriep_jax.evaluate: exact counts against a plain loop, reports."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from eriep_jax import evaluate
from eriep_jax.data import demo
from eriep_jax.train import loop

import tiny


def _config():
  c = tiny.config()
  c.eval_batch_size = 100          # 360 test images -> 4 batches, the last one padded
  c.eval.perturbations = ("clean", "perturb3")
  c.eval.noise_stds = (0.0, 0.3)
  return c


def test_markdown_table_hand_written():
  rows = {"standard": {"clean": 90.0, "perturb1": 50.125}, "eriep": {"clean": 91.5}}
  assert evaluate.markdown_table(rows, ("clean", "perturb1")) == (
      "| method | clean | perturb1 |\n"
      "|---|---:|---:|\n"
      "| standard | 90.00 | 50.12 |\n"
      "| eriep | 91.50 | - |")


def test_sweep_counts_match_a_plain_loop_and_reports(tmp_path):
  c = _config()
  model = loop.build_model(c, 10)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  # Perturb the BN statistics so inference mode is exercised with real values.
  variables = jax.tree.map(lambda x: x + 0.01, variables)
  out = evaluate.evaluate_and_write(c, str(tmp_path), model=model, variables=variables, step=7)
  images, labels = demo.load_demo()["test"]
  assert out["num_examples"] == len(labels) == 360
  logits = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
  expected_clean = int(np.sum(np.argmax(logits, -1) == labels))
  assert out["correct"]["clean"] == expected_clean
  assert out["correct"]["noise_0"] == expected_clean        # std 0 leaves images unchanged
  np.testing.assert_allclose(out["accuracy"]["clean"], 100 * expected_clean / 360)
  assert set(out["correct"]) == {"clean", "perturb3", "noise_0", "noise_0.3"}
  assert json.loads((tmp_path / "eval" / "results.json").read_text())["step"] == 7
  assert "| eriep |" in (tmp_path / "eval" / "results.md").read_text()
  assert (tmp_path / "eval" / "noise_sweep.png").stat().st_size > 1000
  # Deterministic: a second sweep gives the same counts (the compiled step is reused).
  again = evaluate.robustness_sweep(c, model=model, variables=variables)
  assert again["correct"] == out["correct"]


def test_unknown_perturbation_is_refused_before_compute():
  c = _config()
  c.eval.perturbations = ("clean", "fog")
  with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
    evaluate.robustness_sweep(c, model=loop.build_model(c, 10), variables={})


def test_perturbed_counts_do_not_depend_on_batching_or_the_other_names():
  # Random perturbations are drawn per example (keyed by its index in the
  # split), so a different eval batch size (other padding, other device
  # batches) or another list of scored perturbations gives the same counts.
  # A random linear classifier: unlike an untrained CNN, which predicts one
  # class for every input, its predictions move with the noise.
  class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(10)(x.reshape(x.shape[0], -1))

  c = _config()
  c.eval.perturbations = ("clean", "perturb1", "perturb2", "perturb3")
  model = Linear()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  first = evaluate.robustness_sweep(c, model=model, variables=variables)
  c.eval_batch_size = 64           # 360 -> 6 batches, 24 padded
  c.eval.perturbations = ("perturb2", "perturb3", "perturb1")   # another order, no clean
  c.eval.noise_stds = (0.3,)
  second = evaluate.robustness_sweep(c, model=model, variables=variables)
  for name in ("perturb1", "perturb2", "perturb3", "noise_0.3"):
    assert second["correct"][name] == first["correct"][name], name
  # The random perturbations really move predictions (so the equality above is not trivial).
  for name in ("perturb1", "perturb2"):
    assert first["correct"][name] != first["correct"]["clean"], name
  # The counts are not constant: the noise changes predictions, and another
  # seed gives other draws.
  assert first["correct"]["noise_0.3"] != first["correct"]["clean"]
  c.eval.seed += 1
  third = evaluate.robustness_sweep(c, model=model, variables=variables)
  assert (third["correct"]["noise_0.3"], third["correct"]["perturb3"]) != (
      first["correct"]["noise_0.3"], first["correct"]["perturb3"])
