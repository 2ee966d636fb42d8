"""Policy files: what a stage-1 search writes, and loading a policy from any of them.

The policy package's own I/O (it was ``eriep_jax.search.io``): stage 1 writes these files and
stage 2 reads them, so it sits below both, and neither stage imports the other.

A search workdir holds ``policy_checkpoint/`` (orbax), ``policy_params.json``
(the raw parameters, exact), ``policy_init.json`` (the policy it started from), ``policy.json`` (the discretised Policy),
``policy_summary.txt``, ``policy_grid.png`` and ``search_log.json``.
"""

import importlib.util
import os
import pathlib
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from eriep_jax import ops as ops_lib
from eriep_jax import policy as policy_lib

__all__ = ["resolve_source", "SOURCE_WORDS", "CHECKPOINT_DIR", "POLICY_JSON", "SUMMARY_TXT", "PARAMS_JSON", "INITIAL_PARAMS_JSON",
           "SEARCH_LOG",
           "GRID_PNG", "save_policy", "load_policy", "params_from_policy", "is_finished"]

CHECKPOINT_DIR = "policy_checkpoint"
POLICY_JSON = "policy.json"
SUMMARY_TXT = "policy_summary.txt"
PARAMS_JSON = "policy_params.json"
INITIAL_PARAMS_JSON = "policy_init.json"
SEARCH_LOG = "search_log.json"
GRID_PNG = "policy_grid.png"


def save_policy(params: Any, workdir: os.PathLike, *, images: Optional[np.ndarray] = None,
                key: Optional[jax.Array] = None) -> dict[str, pathlib.Path]:
  """Writes the searched policy: orbax checkpoint, JSON, summary table and PNG grid.

  Args:
    params: the :class:`~eriep_jax.policy.PolicyParams` (on the host).
    workdir: output folder (created).
    images: a few clean images (B, H, W, C) for the PNG grid; no grid if None
      or without matplotlib.
    key: PRNG key for the grid's perturbations.

  Returns:
    A dict of the written paths: ``checkpoint``, ``json``, ``summary``, ``grid``.
  """
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  paths = {"checkpoint": workdir / CHECKPOINT_DIR, "json": workdir / POLICY_JSON,
           "summary": workdir / SUMMARY_TXT, "params": workdir / PARAMS_JSON}
  params = jax.device_get(params)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(paths["checkpoint"], _policy_to_tree(params), force=True)
  paths["params"].write_text(policy_lib.params_to_json(params), encoding="utf-8")
  discrete = policy_lib.discretize(params)
  paths["json"].write_text(discrete.to_json(), encoding="utf-8")
  table = discrete.summary()
  paths["summary"].write_text(table + "\n", encoding="utf-8")
  print(table, flush=True)
  if images is not None and importlib.util.find_spec("matplotlib") is not None:
    paths["grid"] = workdir / GRID_PNG
    policy_lib.save_grid(params, images, paths["grid"],
                         jax.random.key(0) if key is None else key)
  return paths


def _policy_to_tree(params: Any) -> dict[str, np.ndarray]:
  """PolicyParams -> a tree of arrays only (orbax stores no strings): ops as indices."""
  all_ops = tuple(ops_lib.OPS)
  return {
      "magnitude": np.asarray(params.magnitude, np.float32),
      "probability": np.asarray(params.probability, np.float32),
      "weight": np.asarray(params.weight, np.float32),
      "op_index": np.asarray([all_ops.index(n) for n in params.ops], np.int32),
      "selection_temperature": np.asarray(params.selection_temperature, np.float32),
      "bernoulli_temperature": np.asarray(params.bernoulli_temperature, np.float32),
      "parameterization": np.asarray(
          policy_lib.PARAMETERIZATIONS.index(params.parameterization), np.int32),
  }


def _policy_from_tree(tree: Mapping[str, Any]) -> Any:
  all_ops = tuple(ops_lib.OPS)
  # A checkpoint written before the parameterization was stored holds logits.
  code = tree.get("parameterization")
  parameterization = ("sigmoid" if code is None
                      else policy_lib.PARAMETERIZATIONS[int(np.asarray(code))])
  return policy_lib.PolicyParams(
      magnitude=jnp.asarray(tree["magnitude"], jnp.float32),
      probability=jnp.asarray(tree["probability"], jnp.float32),
      weight=jnp.asarray(tree["weight"], jnp.float32),
      ops=tuple(all_ops[int(i)] for i in np.asarray(tree["op_index"]).reshape(-1)),
      selection_temperature=float(tree["selection_temperature"]),
      bernoulli_temperature=float(tree["bernoulli_temperature"]),
      parameterization=parameterization)


def params_from_policy(policy: Any, config: Any = None) -> Any:
  """Embeds a discretised Policy (e.g. read from JSON) in raw PolicyParams.

  Each stage's chosen op gets W = 1 and every other op W = 0, so that the
  selection softmax(W / T_sel) puts weight 1 / (1 + (N - 1) e^{-1/T_sel}) on it
  (> 0.99999 at T_sel = 0.05 with 17 ops): soft mode is then the discrete
  policy up to that rounding, and ``discretize`` gives the same Policy back.
  The chosen op's p and mu are stored in ``config.parameterization``'s form
  (the values, or their logits); the other ops keep ``init_probability`` /
  ``init_magnitude``.

  Args:
    policy: a :class:`~eriep_jax.policy.Policy`.
    config: ``config.policy`` (ops, L, temperatures, init values); None means
      the policy defaults. Every op of the Policy must be in its ``ops``.

  Returns:
    :class:`~eriep_jax.policy.PolicyParams` of shape (L, K, N) with L and K
    from the Policy and N from ``config.ops``.

  Raises:
    ValueError: if the Policy uses an op that ``config.ops`` lacks.
  """
  cfg = policy_lib.PolicyConfig() if config is None else policy_lib.PolicyConfig.from_config(
      config)
  missing = sorted({op.op for sub in policy.subpolicies for op in sub} - set(cfg.ops))
  if missing:
    raise ValueError(f"the policy uses ops {missing} that config.policy.ops lacks; add them "
                     "to config.policy.ops.")
  shape = (policy.num_subpolicies, policy.num_stages, len(cfg.ops))
  weight = np.zeros(shape, np.float32)
  prob = np.full(shape, cfg.init_probability, np.float64)
  mag = np.full(shape, cfg.init_magnitude, np.float64)
  for l, sub in enumerate(policy.subpolicies):
    for k, op in enumerate(sub):
      n = cfg.ops.index(op.op)
      weight[l, k, n] = 1.0
      prob[l, k, n] = np.clip(op.probability, 0.0, 1.0)
      mag[l, k, n] = np.clip(op.magnitude, 0.0, 1.0)
  store = lambda v: policy_lib.store_value(_float32_or_logit(v, cfg.parameterization),
                                           "projected")
  return policy_lib.PolicyParams(
      magnitude=store(mag), probability=store(prob), weight=jnp.asarray(weight),
      ops=cfg.ops, selection_temperature=cfg.selection_temperature,
      bernoulli_temperature=cfg.bernoulli_temperature,
      parameterization=cfg.parameterization)


def _float32_or_logit(values: np.ndarray, parameterization: str) -> np.ndarray:
  """Values in [0, 1] as float32, or their logits computed in float64 (exact at 0 and 1)."""
  if parameterization == "projected":
    return values.astype(np.float32)
  with np.errstate(divide="ignore"):
    return (np.log(values) - np.log1p(-values)).astype(np.float32)


def load_policy(path: os.PathLike, config: Optional[ml_collections.ConfigDict] = None, *,
                setting: Optional[str] = None) -> Any:
  """Loads a searched policy: a policy checkpoint dir, a search workdir or a JSON file.

  A checkpoint or a ``policy_params.json`` restores the raw parameters exactly
  (ops and temperatures included); a search workdir is read in that order. A JSON :class:`~eriep_jax.policy.Policy` holds only the
  discretised policy; it is embedded with :func:`params_from_policy`.

  Args:
    path: an orbax ``policy_checkpoint`` dir, a search workdir holding one
      (or a ``policy.json``), or a ``policy.json`` file.
    config: the experiment config; its ``policy`` block is used for JSON.
    setting: the config field the path came from (``'config.policy.source'``),
      for the error message; None for a direct call.

  Returns:
    :class:`~eriep_jax.policy.PolicyParams`.

  Raises:
    ValueError: naming the path, if it is missing or cannot be read as a policy.
  """
  path = pathlib.Path(path)
  kinds = ("a search workdir, a policy_params.json, a policy.json or a policy_checkpoint dir "
           "written by --mode=search")
  fix = f"point {setting} at {kinds}" if setting else f"pass load_policy {kinds}"
  if not path.exists():
    raise ValueError(f"policy path {str(path)!r} does not exist; {fix}.")
  if path.is_dir() and not _is_checkpoint(path):
    for name in (CHECKPOINT_DIR, PARAMS_JSON, POLICY_JSON):
      if (path / name).exists() and (name != CHECKPOINT_DIR or _is_checkpoint(path / name)):
        path = path / name
        break
  try:
    if path.is_file() and '"eriep_jax.policy_params/' in path.read_text(encoding="utf-8"):
      return policy_lib.params_from_json(path.read_text(encoding="utf-8"))
    if path.is_file():
      discrete = policy_lib.Policy.from_json(path.read_text(encoding="utf-8"))
      return params_from_policy(discrete, None if config is None else config.policy)
    with ocp.StandardCheckpointer() as ckpt:
      return _policy_from_tree(ckpt.restore(path.absolute()))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"policy path {str(path)!r} could not be read as a searched policy "
                     f"({type(e).__name__}: {e}); {fix}.") from e


def _is_checkpoint(path: pathlib.Path) -> bool:
  return path.is_dir() and any((path / n).exists() for n in ("_CHECKPOINT_METADATA",
                                                               "_METADATA", "manifest.ocdbt"))


def is_finished(directory: os.PathLike) -> bool:
  """True when ``directory`` holds a finished search (its ``policy_params.json``)."""
  return (pathlib.Path(directory) / PARAMS_JSON).is_file()


SOURCE_WORDS = ("init", "search", "random")


def resolve_source(config: ml_collections.ConfigDict, key: jax.Array, *,
                   run_search: Optional[Callable[[], Any]] = None) -> Any:
  """The one reading of ``config.policy.source``: the stage-2 initial policy it names.

  ``'init'``: ``init_policy(key, config.policy)``; ``'random'``: the discrete
  ``random_policy(config.policy.seed)`` embedded with :func:`params_from_policy`;
  ``'search'``: ``run_search()`` (stage 1, which the caller owns; without it
  the sentence says who resolves it); any other string: :func:`load_policy` of
  that path. Stage 1 (``search.resolve_policy``), stage 2 (``train.loop.train``)
  and the job (``experiment.prepare_policy``, which also reuses a finished search
  and saves the random policy's files) all read the source here.

  Raises:
    ValueError: for an empty source, ``'search'`` without ``run_search``, or a
      missing or corrupt path (naming it).
  """
  source = config.policy.source
  if not isinstance(source, str) or not source:
    raise ValueError(f"config.policy.source must be 'init', 'search', 'random' or a path, got "
                     f"{source!r}.")
  if source == "init":
    return policy_lib.init_policy(key, config.policy)
  if source == "random":
    return params_from_policy(policy_lib.random_policy(int(config.policy.get("seed", 0)),
                                                       config.policy), config.policy)
  if source == "search":
    if run_search is None:
      raise ValueError("policy.source='search' is resolved by eriep_jax.experiment.run (or "
                       "launch.py), which runs stage 1 first; pass initial_policy= to train() "
                       "when calling it directly.")
    return run_search()
  return load_policy(source, config, setting="config.policy.source")

