"""Training: the stage-2 state, step and loop (this package) and stage-1 search (``search``).

    from eriep_jax import train
    out = train.train(config, workdir)               # one method: state + logged history

The whole job (search, every method and seed, evaluation, report) is
``eriep_jax.experiment.run``; this package knows nothing of evaluation.

Submodules are imported lazily so that ``import eriep_jax.train.search`` does
not pull in the stage-2 loop and vice versa.
"""

from eriep_jax._lazy import lazy_exports

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
    "Checkpointer": "checkpoint",
    "config_fingerprint": "checkpoint",
}
_SUBMODULES = ("state", "step", "loop", "checkpoint", "writers", "search")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
