"""Input pipelines (TFDS, image folders, the offline demo set) and Table-2 perturbations.

    info = get_dataset_info(config)
    for batch in train_iterator(config, start_step=step):   # infinite
      ...   # batch['image']: (local_devices, per_device_batch, H, W, C) float32
    for batch in eval_iterator(config, 'test'):             # one pass, padded
      ...   # batch['mask'] is 0 on padding

The pipeline functions live in `pipeline.py` and import TensorFlow, so they are
resolved lazily: `from eriep_jax.data import perturbations` stays free of TF.
"""

from eriep_jax._lazy import lazy_exports

# public name -> submodule that defines it.
_EXPORTS = {
    "DatasetInfo": "sources",
    "SOURCES": "sources",
    "check_data_config": "sources",
    "get_dataset_info": "pipeline",
    "train_iterator": "pipeline",
    "eval_iterator": "pipeline",
    "steps_per_epoch": "pipeline",
    "EVAL_PERTURBATIONS": "perturbations",
    "get_eval_perturbation": "perturbations",
}
_SUBMODULES = ("sources", "pipeline", "folder", "demo", "preprocess",
               "perturbations")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
