"""Tests for the stage-2 loop: exact resume (SIGTERM, kill -9, a torn checkpoint), refusing a
foreign workdir, NaN stop."""

import logging
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eriep_jax.train import checkpoint as ckpt_lib
from eriep_jax.train import loop

import tiny
import train_child

CHILD = pathlib.Path(__file__).resolve().parent / "train_child.py"
K = 3   # the run is 2K steps; the interrupted one stops after K


def _noise_perturb(params, images, key, *, mode):
  """A cheap random stand-in for the EPM: depends on the key and the policy."""
  del mode
  s = jax.nn.sigmoid(jnp.mean(params.magnitude))
  return jnp.clip(images + 0.1 * s * jax.random.normal(key, images.shape), 0.0, 1.0)


def _config():
  """The suite's tiny config (tests/tiny.py), 2K steps with the noise stand-in's syncs."""
  return tiny.config(num_train_steps=2 * K, sync_freq=2, checkpoint_every_steps=100)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, compile_cache):
  wd = str(tmp_path_factory.mktemp("straight"))
  return wd, loop.train(_config(), wd, perturb_fn=_noise_perturb)


class _SigtermAfterK(loop.PreemptionFlag):
  """The loop's SIGTERM handler; a real SIGTERM is raised once K steps are done."""

  def __init__(self):
    self._flag, self._checks = False, 0
    super().__init__()

  @property
  def requested(self):
    self._checks += 1
    if self._checks == K + 1:   # checked before step K + 1
      signal.raise_signal(signal.SIGTERM)
      for _ in range(10_000):   # the Python-level handler runs between bytecodes
        if self._flag:
          break
    return self._flag

  @requested.setter
  def requested(self, value):
    self._flag = value


def test_resume_equals_straight_run(straight, tmp_path, monkeypatch):
  """2K steps straight == K steps, SIGTERM (checkpoint + return), resume for K."""
  _, full = straight
  assert full.finished and full.step == 2 * K
  wd = str(tmp_path / "resumed")
  monkeypatch.setattr(loop, "PreemptionFlag", _SigtermAfterK)
  first = loop.train(_config(), wd, perturb_fn=_noise_perturb)
  monkeypatch.undo()
  assert not first.finished and first.step == K
  assert ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), _config()).latest_step() == K
  # Everything is created afresh from the workdir: state, data position, key.
  second = loop.train(_config(), wd, perturb_fn=_noise_perturb)
  assert second.finished and second.step == 2 * K
  chex.assert_trees_all_close(full.state, second.state, atol=1e-6, rtol=1e-6)
  logged = [h["loss"] for h in first.history + second.history]
  np.testing.assert_allclose(logged, [h["loss"] for h in full.history], rtol=1e-6)
  assert [h["step"] for h in full.history] == list(range(1, 2 * K + 1))
  # The logged ERIEP diagnostics are there and sane.
  h = full.history[-1]
  for k in ("l_n", "l_r", "gap", "frac_ln_gt_lr", "accuracy", "grad_norm", "policy_grad_norm",
            "learning_rate", "elapsed_s", "entropy_stage0", "selected_probability",
            "selected_magnitude"):
    assert np.isfinite(h[k]), k
  assert 0.0 <= h["frac_ln_gt_lr"] <= 1.0
  np.testing.assert_allclose(h["learning_rate"], 1e-3)


def test_foreign_workdir_is_refused_and_untouched(straight):
  wd, _ = straight
  ckpt_dir = os.path.join(wd, "checkpoints")
  before = sorted(os.listdir(ckpt_dir))
  other = _config()
  other.model.width = 1 / 8
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="model.width"):
    loop.train(other, wd, perturb_fn=_noise_perturb)
  assert sorted(os.listdir(ckpt_dir)) == before
  # Logging/eval fields may change on resume: a finished run just returns.
  same = _config()
  same.log_every_steps = 5
  out = loop.train(same, wd, perturb_fn=_noise_perturb)
  assert out.step == 2 * K and out.history == []


def test_window_metrics_fetch_once_check_every_step_and_average():
  # The steps' metrics stay on the device until the window is drained; then every step
  # is checked (the first bad one named) and the window's means are the plain averages.
  window = loop._WindowMetrics()
  ones = jnp.ones((2,))
  for step, loss in ((1, 2.0), (2, 4.0), (3, 9.0)):
    window.add(step, {"loss": loss * ones, "accuracy": 0.5 * step * ones, "finite": ones})
  window.drain(lambda s, m: pytest.fail(f"step {s} flagged"))
  assert window.pending == []
  assert window.compute() == {"loss": 5.0, "accuracy": 1.0}
  bad = []
  window.add(4, {"loss": 1.0 * ones, "accuracy": ones, "finite": ones})
  window.add(5, {"loss": jnp.nan * ones, "accuracy": ones, "finite": ones})
  window.add(6, {"loss": 1.0 * ones, "accuracy": ones, "finite": 0 * ones})
  window.drain(lambda s, m: bad.append(s))
  assert bad == [5, 6]


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, compile_cache):
  from eriep_jax import policy
  from eriep_jax.train import state as state_lib
  wd = str(tmp_path / "nan")
  c = _config()
  c.checkpoint_every_steps = 1
  c.num_train_steps = 20
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e35    # the weights overflow within a few steps
  with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step"):
    loop.train(c, wd, perturb_fn=_noise_perturb)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), c)
  last = checkpointer.latest_step()
  assert last is not None and last < 20
  abstract = state_lib.create_train_state(
      loop.build_model(c, 10), policy.init_policy(jax.random.key(0), c.policy),
      jax.random.PRNGKey(0), image_shape=(32, 32, 3), tx=state_lib.make_optimizer(c, 20),
      policy_tx=state_lib.make_policy_optimizer(c))
  state, meta = checkpointer.restore(abstract)
  checkpointer.close()
  assert meta["step"] == last
  for leaf in jax.tree.leaves(state.params):   # the kept checkpoint is a good one
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def _child(workdir, cache):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, str(CHILD), str(workdir), str(cache)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_sigkill_at_random_moments_then_resume_equals_straight_run(tmp_path, caplog,
                                                                 compile_cache):
  """kill -9 at random moments (saves happen every step), resume: same final N.

  Only the killed runs are child processes (a kill -9 must hit a real process); the
  resumes run here, in the test's process, from the same workdir. All share one XLA
  cache, so the straight run's programs serve the children and the resumes.
  """
  from eriep_jax import experiment  # pylint: disable=g-import-not-at-top
  straight_dir = tmp_path / "straight"
  loop.train(train_child.config(), str(straight_dir))   # same devices and flags as the child
  wd = tmp_path / "killed"
  rng = random.Random(0)
  kills = 0
  for _ in range(2):
    proc = _child(wd, compile_cache)
    # Wait until this process has trained at least one step past its start, then
    # SIGKILL it after a random extra delay (mid-step or mid-save).
    start = len(loop.read_history(str(wd / loop.HISTORY_FILE), 10**9))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
      if len(loop.read_history(str(wd / loop.HISTORY_FILE), 10**9)) > start:
        break
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.4))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.communicate(timeout=60)
  assert kills >= 1
  resumed = loop.train(train_child.config(), str(wd))
  assert resumed.finished and resumed.step == 16
  a, b = experiment.restore(str(straight_dir)), experiment.restore(str(wd))
  assert a.step == b.step == 16
  for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
    np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-6)
  # A truncated latest checkpoint falls back to the previous one, with a warning naming it.
  latest = wd / "checkpoints" / "16"
  victim = max((p for p in (latest / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
  caplog.set_level(logging.WARNING)
  again = loop.train(train_child.config(), str(wd))
  assert again.finished and again.step == 16
  warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
  assert warned and str(latest) in warned[0] and "step 15" in warned[0], warned
  assert (wd / "checkpoints" / "16.unreadable").is_dir()
  c = experiment.restore(str(wd))
  for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(c.state)):
    np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-6)
