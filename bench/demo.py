r"""Benchmark: the README's main job (`configs/demo.py`), wall time and where it goes.

  python -m bench.demo                          # the demo as the README runs it, once
  python -m bench.demo --repeats 3              # the median of 3 runs
  python -m bench.demo --image_size 32          # the digits at the CIFAR models' 32x32

Each run is `python launch.py --config=configs/demo.py --workdir=<fresh temporary folder>`
in a child process, timed from its start to its exit, so start-up, imports and every compile
count, as they do for a user. The breakdown comes from the files the job writes: the stage-1
search's wall time (`search/search_log.json`), each method's training and evaluation time
(`<method>/eval/results.json`); the rest is start-up, imports, checkpoints and plots. The
goal is under 60 s on the 2-core dev box.
"""

import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_integer("repeats", 1, "runs of the whole job; the median is reported")
flags.DEFINE_integer("image_size", None, "config.data.image_size override (the demo's: 16)")
FLAGS = flags.FLAGS

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("standard", "eriep")


def run_once(image_size: int | None) -> dict[str, float]:
  """One whole demo job in a child process; its wall time and the parts the files record."""
  with tempfile.TemporaryDirectory() as tmp:
    workdir = pathlib.Path(tmp) / "demo"
    cmd = [sys.executable, "launch.py", "--config=configs/demo.py", f"--workdir={workdir}",
           "--config.progress=False"]
    if image_size is not None:
      cmd.append(f"--config.data.image_size={image_size}")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if proc.returncode != 0:
      raise SystemExit(f"the demo job failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    parts = {"total": total}
    parts["search"] = json.loads((workdir / "search" / "search_log.json").read_text())[
        "wall_time_s"]
    for method in METHODS:
      result = json.loads((workdir / method / "eval" / "results.json").read_text())
      parts[f"{method} training"] = result["train_wall_time_s"]
      parts[f"{method} evaluation"] = result["eval_wall_time_s"]
    parts["rest (start-up, imports, files)"] = total - sum(
        v for k, v in parts.items() if k != "total")
    return parts


def main(argv):
  del argv
  runs = [run_once(FLAGS.image_size) for _ in range(FLAGS.repeats)]
  size = FLAGS.image_size or "the config's"
  print(f"configs/demo.py, image size {size}, {len(runs)} run(s), median seconds:")
  for name in runs[0]:
    print(f"  {name:34s} {statistics.median(r[name] for r in runs):7.1f}")
  total = statistics.median(r["total"] for r in runs)
  print(f"goal: under 60 s of wall time: {'met' if total < 60 else 'not met'} ({total:.1f} s)")


if __name__ == "__main__":
  app.run(main)
