"""Training: the stage-2 state, step and loop (this package) and stage-1 search (``search``).

    from eriep_jax import train
    results = train.run(config, workdir)             # what launch.py --mode=train calls
    out = train.train(config, workdir)               # one method: state + logged history

Submodules are imported lazily so that ``import eriep_jax.train.search`` does
not pull in the stage-2 loop and vice versa.
"""

import importlib
from typing import Any

_EXPORTS = {
    "TrainState": "state",
    "create_train_state": "state",
    "make_optimizer": "state",
    "make_policy_optimizer": "state",
    "train_step": "step",
    "make_train_step": "step",
    "check_config": "loop",
    "build_model": "loop",
    "train": "loop",
    "train_and_evaluate": "loop",
    "run": "loop",
    "Checkpointer": "checkpoint",
    "config_fingerprint": "checkpoint",
}
_SUBMODULES = ("state", "step", "loop", "checkpoint", "writers", "search")

__all__ = sorted(list(_EXPORTS) + list(_SUBMODULES))


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
  if name in _SUBMODULES:
    module = importlib.import_module(f".{name}", __name__)
    globals()[name] = module
    return module
  raise AttributeError(f"module 'eriep_jax.train' has no attribute {name!r}")


def __dir__():
  return __all__
