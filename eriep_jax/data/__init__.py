"""Input pipelines: TFDS, image folders and the offline demo set.

    info = get_dataset_info(config)
    for batch in train_iterator(config, start_step=step):   # infinite
      ...   # batch['image']: (local_devices, per_device_batch, H, W, C) float32
    for batch in eval_iterator(config, 'test'):             # one pass, padded
      ...   # batch['mask'] is 0 on padding

The pipeline functions live in `pipeline.py`; their tf.data bodies (`tfdata.py`) import
TensorFlow only when a run's `config.data.pipeline` resolves to 'tfdata', and the
in-memory bodies (`memory.py`, demo and folder data) never do. `supcon_augment` and `two_views` (`views.py`) are SupContrast's
training augmentation in JAX, on device: ``views = two_views(images, key)``
gives (B, 2, H, W, C). The Table-2 evaluation perturbations are evaluation, not data
loading: they live in `eriep_jax.evaluate.perturbations`.
"""

from eriep_jax._lazy import lazy_exports

# public name -> submodule that defines it.
_EXPORTS = {
    "DatasetInfo": "sources",
    "SOURCES": "sources",
    "check_data_config": "sources",
    "uses_tensorflow": "sources",
    "resolve_pipeline": "sources",
    "get_dataset_info": "pipeline",
    "train_iterator": "pipeline",
    "eval_iterator": "pipeline",
    "steps_per_epoch": "pipeline",
    "heldout_arrays": "pipeline",
    "supcon_augment": "views",
    "two_views": "views",
}
_SUBMODULES = ("sources", "pipeline", "tfdata", "memory", "folder", "demo", "preprocess",
               "views")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
