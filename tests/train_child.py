"""A stage-2 run in its own process, for the kill -9 test: python tests/train_child.py WORKDIR.

Not a test module (pytest collects test_*.py only). The config is
``config()``, the suite's tiny one (tests/tiny.py), shared with the test's straight run.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tiny  # pylint: disable=g-import-not-at-top


def config():
  return tiny.config()   # 16 steps, a sync every 3, a checkpoint every step


if __name__ == "__main__":
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", sys.argv[2])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  from eriep_jax.train import loop  # pylint: disable=g-import-not-at-top
  out = loop.train(config(), sys.argv[1])
  print(f"finished={out.finished} step={out.step}", flush=True)
