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


@pytest.fixture(scope="session")
def shared_dir():
  """Path to ../shared; skips the test with a reason when it is absent."""
  if not (SHARED / "data" / "cifar10-jpeg.tar.gz").exists():
    pytest.skip(f"needs the real CIFAR-10 archive at {SHARED}/data/cifar10-jpeg.tar.gz, "
                "which is absent on this machine")
  return SHARED
