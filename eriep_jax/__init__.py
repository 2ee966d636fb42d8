"""eriep_jax: a JAX/Flax reimplementation of ERIEP.

ERIEP trains an image classifier N on clean images together with a frozen
reference copy R that sees images perturbed by a learned Environmental
Perturbation Module (EPM), with the loss L_N + alpha * |L_N - L_R| (Eq. 9).

The public API is re-exported here. Names are resolved lazily so that
``import eriep_jax`` stays cheap and does not pull in TensorFlow unless a data
pipeline is actually used.
"""

from eriep_jax._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it. The rest
# stays importable from its subpackage (eriep_jax.ops, .losses, .data, ...).
_EXPORTS = {
    # The EPM policy (Section 3.2, Eq. 1).
    "perturb": "policy",
    "init_policy": "policy",
    "PolicyConfig": "policy",
    "Policy": "policy",
    "discretize": "policy",
    "load_policy": "policy.files",
    # Eq. (9) and the reference sync, for users' own loops.
    "eriep_loss": "losses",
    "sync_reference": "losses",
    # Models.
    "get_model": "models",
    # Trained runs and the whole job.
    "restore": "train.restore",
    "run": "experiment",
}

_SUBMODULES = ("ops", "policy", "models", "losses", "data", "search", "train", "evaluate",
               "experiment", "config_checks", "images", "writers",
               "rng", "parallel")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
