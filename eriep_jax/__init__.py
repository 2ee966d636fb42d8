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

# public name -> module (relative to this package) that defines it.
_EXPORTS = {
    # Table-1 operations.
    "OPS": "ops",
    "OpSpec": "ops",
    "get_op": "ops",
    "get_ops": "ops",
    # The EPM policy (Section 3.2, Eq. 1).
    "PolicyConfig": "policy",
    "PolicyParams": "policy",
    "Policy": "policy",
    "init_policy": "policy",
    "perturb": "policy",
    "discretize": "policy",
    "save_grid": "policy",
    "Operation": "policy",
    "constrain": "policy",
    "sample_subpolicies": "policy",
    # Models.
    "get_model": "models",
    "list_models": "models",
    "SearchCritic": "models.critic",
    # Data pipelines and the Table-2 evaluation perturbations.
    "DatasetInfo": "data",
    "get_dataset_info": "data",
    "train_iterator": "data",
    "eval_iterator": "data",
    "steps_per_epoch": "data",
    "get_eval_perturbation": "data",
    "EVAL_PERTURBATIONS": "data",
    # Losses (Eq. 3-4 and 9).
    "eriep_loss": "losses",
    "sync_reference": "losses",
    "gradient_penalty": "losses",
    "critic_loss": "losses",
    "policy_loss": "losses",
    "cross_entropy": "losses",
    # Stage 1 (policy search).
    "run_search": "train.search",
    "resolve_policy": "train.search",
}

_SUBMODULES = ("ops", "policy", "models", "losses", "data", "train", "evaluate")

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
