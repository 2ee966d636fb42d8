"""Tests for the whole job (eriep_jax.experiment): variants, seeds, resume, restore.

Everything here runs the real soft EPM inside the real step, on the demo set,
with a two-op policy so that compilation stays short.
"""

import json
import os
import tempfile

import chex
import jax
import numpy as np
import pytest

import eriep_jax
from eriep_jax import experiment
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax.train import checkpoint as ckpt_lib
from eriep_jax.train import loop

import tiny


def _config(steps=4):
  """The suite's tiny evaluated run (tests/tiny.py), scored on every perturbation."""
  return tiny.job(num_train_steps=steps, sync_freq=2, eval=dict(
      noise_stds=(0.0, 0.2), perturbations=("clean", "perturb1", "perturb2", "perturb3")))


pytestmark = pytest.mark.usefixtures("compile_cache")   # tests/conftest.py


def test_public_api_is_small():
  assert eriep_jax.__all__ == sorted([
      "perturb", "init_policy", "PolicyConfig", "Policy", "discretize", "load_policy",
      "eriep_loss", "sync_reference", "get_model", "restore", "run"])
  assert eriep_jax.restore is experiment.restore
  assert callable(eriep_jax.ops.get_op)   # the rest stays in its subpackage


def test_parse_variant():
  assert experiment.parse_variant("eriep_live") == ("eriep", {"reference": "live"})
  assert experiment.parse_variant("augment_random") == ("augment", {"policy.source": "random"})
  assert experiment.parse_variant("eriep_live_fixedpolicy") == (
      "eriep", {"reference": "live", "update_policy": False})
  assert experiment.parse_variant("oracle") == ("oracle", {})
  sub = experiment.variant_config(_config(), "eriep_random", seed=3)
  assert (sub.method, sub.policy.source, sub.seed, tuple(sub.seeds)) == ("eriep", "random", 3, ())
  with pytest.raises(ValueError, match="unknown modifier 'alive' in 'eriep_alive'"):
    experiment.parse_variant("eriep_alive")
  with pytest.raises(ValueError, match="unknown method 'sgd'"):
    experiment.parse_variant("sgd")
  c = _config()
  c.seeds = (0, 0)
  with pytest.raises(ValueError, match="lists a seed twice"):
    experiment.run(c, "/nonexistent/never_written")


def test_alpha_zero_trains_the_same_n_as_standard():
  """Eq. (9) with alpha = 0 is plain cross-entropy on N; another seed gives another N."""
  outs = {}
  for name, method, alpha, seed in (("standard", "standard", 0.5, 0), ("eriep0", "eriep", 0.0, 0),
                                    ("standard1", "standard", 0.5, 1), ("eriep", "eriep", 0.5, 0)):
    c = _config(steps=3)
    c.method, c.alpha, c.seed = method, alpha, seed
    c.checkpoint_every_steps = 100
    with tempfile.TemporaryDirectory() as d:
      outs[name] = loop.train(c, d)
  chex.assert_trees_all_close(outs["standard"].state.params, outs["eriep0"].state.params,
                              atol=1e-6, rtol=1e-7)
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(outs["standard"].state.params),
      jax.tree.leaves(outs["standard1"].state.params)))
  assert diff > 1e-3
  # The real EPM ran and moved: eriep's policy changed, standard's did not.
  # The loop's start for seed 0 (init='uniform' draws it from this key).
  p0 = policy_lib.init_policy(rng.purpose_key(jax.random.key(0), "policy"), _config().policy)
  moved = float(np.max(np.abs(outs["eriep0"].state.policy_params.magnitude - p0.magnitude)))
  assert moved == 0.0   # alpha = 0: the gap term, the EPM's only gradient, is off
  assert float(np.max(np.abs(outs["standard"].state.policy_params.weight - p0.weight))) == 0.0
  # With alpha = 0.5 and the default policy learning rate (1e-3), the EPM moves: Adam's
  # first steps change every parameter that has a gradient by about the learning rate.
  moved = np.abs(outs["eriep"].state.policy_params.magnitude - p0.magnitude)
  assert 1e-4 < float(np.max(moved)) <= 3 * 3e-3 + 1e-6


def _foreign_policy():
  """L = 3, K = 1, three ops in an order config.policy.ops does not have."""
  key = jax.random.key(7)
  shape = (3, 1, 3)
  k1, k2, k3 = jax.random.split(key, 3)
  return policy_lib.PolicyParams(
      magnitude=jax.random.normal(k1, shape), probability=jax.random.normal(k2, shape),
      weight=jax.random.normal(k3, shape), ops=("rotate", "invert", "brightness"),
      selection_temperature=0.5, bernoulli_temperature=0.2)


def test_resume_restore_and_eval_with_a_foreign_policy(tmp_path):
  path = tmp_path / "foreign_params.json"
  foreign = _foreign_policy()
  path.write_text(policy_lib.params_to_json(foreign))
  c = _config(steps=4)
  c.policy.source = str(path)
  straight = loop.train(c, str(tmp_path / "straight"))
  first = loop.train(c, str(tmp_path / "resumed"), stop_after_steps=2)
  assert not first.finished and first.step == 2
  second = loop.train(c, str(tmp_path / "resumed"))   # config.policy says L=2, K=2, 2 ops
  assert second.finished and second.step == 4
  chex.assert_trees_all_close(straight.state, second.state, atol=1e-6, rtol=1e-7)
  run = eriep_jax.restore(str(tmp_path / "resumed"))
  assert run.policy.ops == ("rotate", "invert", "brightness")
  assert run.policy.weight.shape == (3, 1, 3)
  assert (run.policy.selection_temperature, run.policy.bernoulli_temperature) == (0.5, 0.2)
  assert run.step == 4 and run.config.policy.source == str(path)
  chex.assert_trees_all_equal(run.variables["params"], second.state.params)
  # The restored policy is the trained one: same perturbation for the same key.
  x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(
      eriep_jax.perturb(run.policy, x, jax.random.key(1), mode="hard"),
      eriep_jax.perturb(second.state.policy_params, x, jax.random.key(1), mode="hard"))
  # --mode=eval opens the run with restore, whatever config.policy says.
  res = experiment.evaluate_workdir(c, str(tmp_path / "resumed"))
  r = res[str(tmp_path / "resumed")]
  assert r["num_examples"] == 360 and r["step"] == 4


def test_restore_refuses_with_one_sentence(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    eriep_jax.restore(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="has no checkpoint; train it first"):
    eriep_jax.restore(str(tmp_path / "empty"))
  c = _config(steps=2)
  old_format = ckpt_lib.FORMAT
  try:
    ckpt_lib.FORMAT = "eriep_jax.train_checkpoint/v1"
    loop.train(c, str(tmp_path / "old"))
  finally:
    ckpt_lib.FORMAT = old_format
  before = sorted(os.listdir(tmp_path / "old" / "checkpoints"))
  with pytest.raises(ValueError, match="written by another version of eriep_jax"):
    eriep_jax.restore(str(tmp_path / "old"))
  with pytest.raises(ValueError, match="written by another version of eriep_jax"):
    loop.train(c, str(tmp_path / "old"))
  assert sorted(os.listdir(tmp_path / "old" / "checkpoints")) == before
  with pytest.raises(ValueError, match=r"holds the trained runs \['old'\]"):
    eriep_jax.restore(str(tmp_path))
  # Only this library's checkpoints count as runs, and only a few levels down: a foreign
  # 'checkpoints' folder (orbax's own tests, say) and a run buried deep are not listed.
  (tmp_path / "site" / "orbax" / "checkpoints" / "7").mkdir(parents=True)
  deep = tmp_path / "a" / "b" / "c" / "d" / "e" / "checkpoints" / "3" / "meta"
  deep.mkdir(parents=True)
  shallow = tmp_path / "study" / "eriep" / "seed_0" / "checkpoints" / "10" / "meta"
  shallow.mkdir(parents=True)
  assert experiment.trained_runs_below(str(tmp_path)) == ["old", "study/eriep/seed_0"]
  assert experiment.trained_runs_below(str(tmp_path), max_depth=10) == [
      "a/b/c/d/e", "old", "study/eriep/seed_0"]


def _sweep_config():
  c = _config(steps=4)
  c.compare_methods = ("standard", "eriep_random")
  c.seeds = (0,)
  c.policy.source = "init"
  return c


def test_killed_sweep_reruns_only_what_is_unfinished(tmp_path, monkeypatch):
  straight = experiment.run(_sweep_config(), str(tmp_path / "straight"))
  assert set(straight) == {str(tmp_path / "straight" / v / "seed_0")
                           for v in ("standard", "eriep_random")}
  wd = tmp_path / "killed"
  real_train = loop.train
  calls = []

  def preempted(config, workdir, **kw):   # the second run is stopped after 2 of its 4 steps
    if config.method == "eriep":
      kw["stop_after_steps"] = 2
    calls.append((config.method, kw.get("stop_after_steps")))
    return real_train(config, workdir, **kw)

  monkeypatch.setattr(experiment.loop, "train", preempted)
  first = experiment.run(_sweep_config(), str(wd))
  assert calls == [("standard", None), ("eriep", 2)]
  assert first[str(wd / "eriep_random" / "seed_0")]["finished"] is False
  assert not (wd / "report").exists()
  calls.clear()
  steps_run = []

  def counting(config, workdir, **kw):
    meta = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), None).read_meta()
    out = real_train(config, workdir, **kw)
    steps_run.append((config.method, 0 if meta is None else meta["step"], out.step))
    return out

  monkeypatch.setattr(experiment.loop, "train", counting)
  stamp = (wd / "standard" / "seed_0" / "eval" / "results.json").stat().st_mtime_ns
  second = experiment.run(_sweep_config(), str(wd))
  assert steps_run == [("eriep", 2, 4)]   # standard is skipped; eriep resumes at step 2
  assert (wd / "standard" / "seed_0" / "eval" / "results.json").stat().st_mtime_ns == stamp
  for d in ("standard", "eriep_random"):
    a = second[str(wd / d / "seed_0")]
    b = straight[str(tmp_path / "straight" / d / "seed_0")]
    assert a["accuracy"] == b["accuracy"], d
    assert a["training"] == pytest.approx(b["training"]), d
  r = second[str(wd / "eriep_random" / "seed_0")]
  assert r["seed"] == 0 and r["variant"] == "eriep_random" and r["policy_source"] == "random"
  assert r["jax_version"] == jax.__version__
  assert len(r["git_commit"]) == 40 or r["git_commit"] == "unknown"
  for k in ("mean_l_n", "mean_l_r", "mean_gap", "mean_frac_ln_gt_lr"):
    assert np.isfinite(r["training"][k]), k
  assert [h["step"] for h in r["policy_drift"]] == [1, 2, 3, 4]
  assert r["initial_policy"]["subpolicies"] and r["final_policy"]["subpolicies"]
  assert r["train_wall_time_s"] > 0
  # What the EPM became: a grid PNG for the run whose policy trains, none for standard.
  assert (wd / "eriep_random" / "seed_0" / experiment.FINAL_POLICY_GRID).stat().st_size > 10_000
  assert not (wd / "standard" / "seed_0" / experiment.FINAL_POLICY_GRID).exists()
  # The random control's policy is on disk like a searched one, and the report was built.
  saved = policy_lib.Policy.from_json((wd / "random_policy" / "policy.json").read_text())
  drawn = policy_lib.random_policy(0, _sweep_config().policy)
  for a, b in zip(sum(saved.subpolicies, ()), sum(drawn.subpolicies, ())):
    assert a.op == b.op   # stored as float32 logits: values agree to float32 precision
    np.testing.assert_allclose([a.probability, a.magnitude], [b.probability, b.magnitude],
                               atol=1e-6)
  # The control starts from that random policy (not from 'init', the sweep's own source):
  # the run's initial policy, in its results and in its folder, equals policy.json op by op.
  rundir = wd / "eriep_random" / "seed_0"
  for name, started in (
      ("results.json", policy_lib.Policy.from_json(json.dumps(r["initial_policy"]))),
      (experiment.INITIAL_POLICY,
       policy_lib.Policy.from_json((rundir / experiment.INITIAL_POLICY).read_text()))):
    ops = [[o.op for o in sub] for sub in started.subpolicies]
    assert ops == [[o.op for o in sub] for sub in saved.subpolicies], name
    np.testing.assert_allclose(
        [[o.probability, o.magnitude] for o in sum(started.subpolicies, ())],
        [[o.probability, o.magnitude] for o in sum(saved.subpolicies, ())],
        atol=1e-6, rtol=0, err_msg=name)
  report = json.loads((wd / "report" / "report.json").read_text())
  assert "eriep_random - standard" in report["summary"]["models"]["cnn4"]["differences"]
  # --mode=eval re-scores every run from its checkpoint: the same counts, the record kept.
  again = experiment.evaluate_workdir(_sweep_config(), str(wd))
  for d in ("standard", "eriep_random"):
    k = str(wd / d / "seed_0")
    assert again[k]["correct"] == second[k]["correct"], d
    assert again[k]["training"] == second[k]["training"], d
    saved = json.loads((wd / d / "seed_0" / "eval" / "results.json").read_text())
    assert saved["correct"] == second[k]["correct"] and saved["seed"] == 0, d


def test_the_recorded_commit_can_be_passed_in(monkeypatch):
  # A copy of the repository with stale git metadata (the GPU machine's) records what it is given.
  monkeypatch.setenv(experiment.GIT_COMMIT_ENV, "0e56edc")
  assert experiment._git_commit() == "0e56edc"
  monkeypatch.delenv(experiment.GIT_COMMIT_ENV)
  got = experiment._git_commit()
  assert got == "unknown" or (len(got) == 40 and got != "0e56edc")
