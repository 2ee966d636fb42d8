"""eriep_jax: a JAX/Flax reimplementation of ERIEP.

ERIEP trains an image classifier N on clean images together with a frozen
reference copy R that sees images perturbed by a learned Environmental
Perturbation Module (EPM), with the loss L_N + alpha * |L_N - L_R| (Eq. 9).

The public API is re-exported here. Names are resolved lazily so that
``import eriep_jax`` stays cheap and does not pull in TensorFlow unless a data
pipeline is actually used.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it.
_EXPORTS = {
    # Table-1 operations.
    "OPS": "ops",
    # The EPM policy (Section 3.2, Eq. 1).
    "PolicyConfig": "policy",
    "PolicyParams": "policy",
    "Policy": "policy",
    "init_policy": "policy",
    "perturb": "policy",
    "discretize": "policy",
    "save_grid": "policy",
    # Models.
    "get_model": "models",
    "list_models": "models",
    # Losses (Eq. 3-4 and 9).
    "eriep_loss": "losses",
    "sync_reference": "losses",
    "gradient_penalty": "losses",
}

_SUBMODULES = ("ops", "policy", "models", "losses", "data", "train", "evaluate")

__all__ = sorted(list(_EXPORTS) + list(_SUBMODULES))


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value
  if name in _SUBMODULES:
    module = importlib.import_module(f".{name}", __name__)
    globals()[name] = module
    return module
  raise AttributeError(f"module 'eriep_jax' has no attribute {name!r}")


def __dir__():
  return __all__
