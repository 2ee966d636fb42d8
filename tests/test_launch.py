"""End-to-end: launch.py on the offline demo set: search, train (standard + eriep), evaluate.

Also the multi-host path: the same job as two `--distributed` processes over
127.0.0.1 must train to the same state as one process with two devices.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# A tiny version of configs/demo.py: a few steps, a 1/16-width model, 2 noise levels.
_OVERRIDES = [
    "--config.num_train_steps=12", "--config.model.width=0.0625", "--config.batch_size=16",
    "--config.policy.num_subpolicies=2", "--config.eval.noise_stds=(0.0,0.2)",
    "--config.log_every_steps=1", "--config.progress=False", "--config.write_plots=False",
    # The demo's stage-1 search phase, shrunk to 2 steps: stage 2 starts from its policy.
    "--config.search.num_steps=2", "--config.search.num_examples=64",
    "--config.search.batch_size=16",
    # Three of the 17 ops (one geometric, one colour, one erasing) keep the EPM's compile
    # short; every op is tested on its own in test_ops and test_policy.
    "--config.policy.ops=('rotate','brightness','cutout')",
    "--config.model.name=cnn4",   # the demo's cnn8 with one conv per stage: a shorter compile
]


# One persistent XLA cache for every process this module starts: the demo job's programs
# are compiled once, not once per launch (both two-process legs share theirs). A cached
# executable is the same program, so the results are unchanged.
_CACHE = {}


def _env(devices):
  """The child's environment: `devices` CPU devices, the suite's other XLA flags, one cache."""
  if "dir" not in _CACHE:
    import tempfile  # pylint: disable=g-import-not-at-top
    _CACHE["dir"] = tempfile.mkdtemp(prefix="eriep_launch_xla_cache_")
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
              JAX_COMPILATION_CACHE_DIR=_CACHE["dir"],
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              XLA_FLAGS=" ".join([f"--xla_force_host_platform_device_count={devices}", *flags]))


def _launch(workdir, *extra, without_tensorflow=False):
  env = _env(devices=2)
  script = "tests/launch_without_tensorflow.py" if without_tensorflow else "launch.py"
  cmd = [sys.executable, script, "--config=configs/demo.py", f"--workdir={workdir}",
         *_OVERRIDES, *extra]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def test_launch_demo_end_to_end_and_as_two_processes(tmp_path):
  wd = tmp_path / "demo"
  # The whole job on a machine without TensorFlow: the demo's in-memory pipeline and the
  # console writer; an import of TensorFlow anywhere on the way fails the run.
  proc = _launch(wd, without_tensorflow=True)
  table = proc.stdout
  assert "| standard |" in table and "| eriep |" in table and "noise_0.2" in table
  comparison = json.loads((wd / "comparison.json").read_text())
  assert comparison["columns"] == ["clean", "perturb1", "perturb2", "perturb3", "noise_0.2"]
  assert comparison["num_examples"] == 360     # the demo test split, padding masked out
  for method in ("standard", "eriep"):
    r = json.loads((wd / method / "eval" / "results.json").read_text())
    assert r["method"] == method and r["step"] == 12 and r["num_examples"] == 360
    for name in ("clean", "perturb1", "perturb2", "perturb3", "noise_0", "noise_0.2"):
      assert r["correct"][name] == round(r["accuracy"][name] * 360 / 100)
      assert 0 <= r["correct"][name] <= 360
    # noise std 0 is the clean image: identical counts.
    assert r["correct"]["noise_0"] == r["correct"]["clean"]
    assert (wd / method / "eval" / "results.md").read_text().count("|") > 10
    assert (wd / method / "checkpoints").is_dir()
  assert (wd / "comparison.md").is_file()
  assert (wd / "search" / "policy.json").is_file()   # stage 1 ran once, shared by both methods
  # --mode=eval's reproduction of the scores is tested in process (test_experiment's sweep).
  # The same job as two processes (multi-host path) trains to the same state, there with
  # the tf.data pipeline: the two pipelines give the demo's batches bit for bit.
  # In this test rather than its own so the one-process run is shared.
  _check_two_processes_match(wd, tmp_path / "two_processes")


def test_launch_bad_config_is_one_sentence_and_writes_nothing(tmp_path):
  wd = tmp_path / "bad"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  cmd = [sys.executable, "launch.py", "--config=configs/demo.py", f"--workdir={wd}",
         "--config.model.name=resnet7"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: unknown model 'resnet7'; use one of ["), last
  assert "cnn8" in last and "Traceback" not in proc.stderr
  assert not wd.exists() or not any(wd.iterdir())   # refused before anything was written


def _free_port() -> int:
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _final_state(workdir, method):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  steps = sorted((p for p in (workdir / method / "checkpoints").iterdir() if p.name.isdigit()),
                 key=lambda p: int(p.name))
  return ocp.StandardCheckpointer().restore(steps[-1] / "state")


def _two_processes(two, env, leg, *, sigterm_after=None, extra=()):
  """Runs the demo job as two --distributed processes; returns their (stdout, stderr)."""
  port = _free_port()
  # Output goes to files, not pipes: waiting on one process must not leave
  # the other blocked on a full pipe.
  logs = [(two.parent / f"{leg}{i}.out", two.parent / f"{leg}{i}.err") for i in range(2)]
  procs = []
  try:
    for i, (out, err) in enumerate(logs):
      with open(out, "w") as fo, open(err, "w") as fe:
        procs.append(subprocess.Popen(
            [sys.executable, "launch.py", "--config=configs/demo.py", f"--workdir={two}",
             *_OVERRIDES, *extra, "--distributed", f"--coordinator_address=127.0.0.1:{port}",
             "--num_processes=2", f"--process_id={i}"],
            cwd=REPO, env=env, stdout=fo, stderr=fe, text=True))
    if sigterm_after is not None:
      deadline = time.time() + 500
      while time.time() < deadline and all(p.poll() is None for p in procs):
        if sigterm_after.exists() and len(sigterm_after.read_text().splitlines()) >= 2:
          procs[1].send_signal(signal.SIGTERM)
          break
        time.sleep(0.02)
    for p in procs:
      p.wait(timeout=600)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  outs = [(out.read_text(), err.read_text()) for out, err in logs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  return outs


def _check_two_processes_match(one, two):
  """Runs the demo as two processes on 127.0.0.1 into `two`; compares with `one`.

  `--distributed` with an explicit coordinator: two processes of one CPU
  device each (jax.distributed, Gloo collectives), sharing one workdir as
  hosts share a file system. It is preempted once (SIGTERM to one process)
  and rerun. The same global batches reach the same two devices as in `one`,
  a single process with two devices, so training must give the same final
  state up to float tolerance.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  env = _env(devices=1)   # one device per process
  # First leg: SIGTERM to process 1 alone, once both train. They agree (every step here)
  # and both stop at the same step, save it and exit 0.
  tfdata = ["--config.data.pipeline=tfdata"]
  outs = _two_processes(two, env, "first", sigterm_after=two / "standard" / "history.jsonl",
                        extra=["--config.preemption_check_every_steps=1", *tfdata])
  stops = [re.findall(r"training stopped at step (\d+) before the end", err) for _, err in outs]
  assert stops[0] and stops[0] == stops[1], [err[-2000:] for _, err in outs]
  stopped = int(stops[0][0])
  assert 0 < stopped < 12
  saved = sorted(int(p.name) for p in (two / "standard" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert saved[-1] == stopped
  assert not (two / "eriep").exists()   # the job ended there
  # Second leg: the same command resumes and finishes.
  outs = _two_processes(two, env, "second", extra=tfdata)
  tables = [[line for line in out.splitlines() if line.startswith("| ")] for out, _ in outs]
  assert tables[0] and tables[0] == tables[1]   # every process prints the same table
  for method in ("standard", "eriep"):
    want = jax.tree.leaves(_final_state(one, method))
    got = jax.tree.leaves(_final_state(two, method))
    assert len(got) == len(want) > 10
    for a, b in zip(got, want):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    r1 = json.loads((one / method / "eval" / "results.json").read_text())
    r2 = json.loads((two / method / "eval" / "results.json").read_text())
    # Each process evaluates its shard; the counts are summed over both.
    assert r2["num_examples"] == r1["num_examples"] == 360
    # The random perturbations are drawn per example, so every count is the
    # same as with one process.
    assert r2["correct"] == r1["correct"]
