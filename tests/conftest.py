"""Test set-up shared by every test file.

Two fake CPU devices are created for every test so that pmap code paths can be
checked on a CPU-only machine. This must happen before JAX is imported.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


# The two longest tests (subprocess jobs, minutes each) start first, so that under
# pytest -n 2 one worker runs them while the other works through the rest, and neither
# idles at the end waiting for a long test that was handed out last.
_LONGEST_FIRST = ("test_launch.py::test_launch_demo_end_to_end_and_as_two_processes",
                  "test_notebook.py::test_quickstart_notebook_runs_and_its_models_learn",
                  "test_train_loop.py::test_sigkill_at_random_moments_then_resume")


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: not any(name in item.nodeid for name in _LONGEST_FIRST))


@pytest.fixture(scope="session")
def shared_dir():
  """Path to ../shared; skips the test with a reason when it is absent."""
  if not (SHARED / "data" / "cifar10-jpeg.tar.gz").exists():
    pytest.skip(f"needs the real CIFAR-10 archive at {SHARED}/data/cifar10-jpeg.tar.gz, "
                "which is absent on this machine")
  return SHARED


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent XLA cache for one module: its runs compile each program once.

  Yields the cache folder (child processes can be pointed at it). jax sets up its
  persistent cache once per process, at first use, and then ignores a new folder, so
  the cache is reset on the way in and out: this folder is the one used.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path_factory.mktemp("xla_cache"))
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  compilation_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    yield directory
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    compilation_cache.reset_cache()
