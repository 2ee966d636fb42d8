"""Test set-up shared by every test file.

Two fake CPU devices are created for every test so that pmap code paths can be
checked on a CPU-only machine. This must happen before JAX is imported.

The suite is compile-bound, so every test process (each pytest-xdist worker, and
the child processes its tests start) keeps one persistent XLA cache for the
session: a program that several tests build (the tiny config's steps, in
tests/tiny.py) is compiled once per worker. A cached executable is the same
program, so no result changes. Each worker has its own folder: jax writes cache
entries without a lock, so two writers must not share one.
"""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
_XLA_CACHE = os.path.join(
    tempfile.gettempdir(),
    f"eriep_jax_tests_xla_{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}_"
    f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
# Only programs that take 0.5 s or more to compile are written: the steps and jobs that
# many tests share, not the hundreds of small op programs that each test builds once.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

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


@pytest.fixture(scope="session")
def compile_cache():
  """The persistent XLA cache folder of this test process, for child processes to share."""
  return os.environ["JAX_COMPILATION_CACHE_DIR"]


def pytest_unconfigure(config):
  del config
  import shutil  # pylint: disable=g-import-not-at-top
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") == _XLA_CACHE:
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)
