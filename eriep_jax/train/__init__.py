"""Training: the stage-2 state, step, loop and checkpoints (stage 1 is ``eriep_jax.search``).

    from eriep_jax import train
    out = train.train(config, workdir)               # one method: state + logged history

The whole job (search, every method and seed, evaluation, report) is
``eriep_jax.experiment.run``; this package knows nothing of evaluation.

Submodules are imported lazily so that ``import eriep_jax.train.step`` does not
pull in the loop (and TensorFlow through the data pipeline).
"""

from eriep_jax._lazy import lazy_exports

_EXPORTS = {
    "TrainState": "state",
    "create_train_state": "state",
    "make_optimizer": "state",
    "make_policy_optimizer": "state",
    "train_step": "step",
    "make_train_step": "step",
    "build_model": "loop",
    "train": "loop",
    "Checkpointer": "checkpoint",
    "config_fingerprint": "checkpoint",
    "check_config": "checks",
    "restore": "restore",
    "Run": "restore",
}
_SUBMODULES = ("state", "step", "loop", "checkpoint", "checks", "restore")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
