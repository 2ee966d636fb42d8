"""A stage-2 run in its own process, for the kill -9 test: python tests/train_child.py WORKDIR.

Not a test module (pytest collects test_*.py only). The config is
``config()``, shared with the test's straight run.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import configs.default as default_config  # pylint: disable=g-import-not-at-top


def config():
  c = default_config.get_config()
  c.model.name = "cnn4"   # the shallowest net: the same loop, the shortest compile
  c.data.source = "demo"
  c.data.name = "digits"
  c.data.num_train_examples = 96
  c.data.shuffle_buffer = 96
  c.model.width = 1 / 16
  c.policy.num_subpolicies = 2
  c.policy.ops = ("brightness", "contrast")
  c.batch_size = 8
  c.num_train_steps = 16
  c.sync_freq = 3
  c.log_every_steps = 1
  c.checkpoint_every_steps = 1
  c.progress = False
  return c


if __name__ == "__main__":
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", sys.argv[2])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  from eriep_jax.train import loop  # pylint: disable=g-import-not-at-top
  out = loop.train(config(), sys.argv[1])
  print(f"finished={out.finished} step={out.step}", flush=True)
