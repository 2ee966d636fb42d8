"""Input pipelines (TFDS, image folders, the offline demo set) and Table-2 perturbations.

    info = get_dataset_info(config)
    for batch in train_iterator(config, start_step=step):   # infinite
      ...   # batch['image']: (local_devices, per_device_batch, H, W, C) float32
    for batch in eval_iterator(config, 'test'):             # one pass, padded
      ...   # batch['mask'] is 0 on padding

The pipeline functions live in `pipeline.py` and import TensorFlow, so they are
resolved lazily: `from eriep_jax.data import perturbations` stays free of TF.
"""

import importlib
from typing import Any

# public name -> submodule that defines it.
_EXPORTS = {
    "DatasetInfo": "sources",
    "get_dataset_info": "pipeline",
    "train_iterator": "pipeline",
    "eval_iterator": "pipeline",
    "steps_per_epoch": "pipeline",
    "EVAL_PERTURBATIONS": "perturbations",
    "get_eval_perturbation": "perturbations",
}
_SUBMODULES = ("sources", "pipeline", "folder", "demo", "preprocess",
               "perturbations")

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
  raise AttributeError(f"module 'eriep_jax.data' has no attribute {name!r}")


def __dir__():
  return __all__
