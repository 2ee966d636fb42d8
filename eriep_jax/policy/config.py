"""The EPM's configuration and learnable parameters (M, P, W of Eq. 1).

`PolicyConfig` holds the hyperparameters, `PolicyParams` the raw,
unconstrained parameters and `constrain` maps them to their ranges (the only
place where this happens). Also here: the validators of config fields, keys
and params shared by the other modules of `eriep_jax.policy`, the hard-mode
tables (top-1 op per stage by W), the selection statistics logged during the
search, and the JSON round trip of the raw parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import ops as ops_lib
from eriep_jax import rng

# v2 adds the parameterization; a v1 file holds sigmoid logits and still loads as 'sigmoid'.
_PARAMS_FORMAT = "eriep_jax.policy_params/v2"
_PARAMS_FORMATS = ("eriep_jax.policy_params/v1", _PARAMS_FORMAT)

# How M and P are stored (`PolicyParams.parameterization`):
#   projected: the values mu and p themselves, projected back into [0, 1] after
#     every update (`project`); Faster AutoAugment's reimplementation stores the
#     values too, but clamps where they are used, which passes no gradient past a bound.
#   sigmoid: logits, mu = sigmoid(M), p = sigmoid(P) (this library before v2).
PARAMETERIZATIONS = ("projected", "sigmoid")
# How `init_policy` draws the start (`PolicyConfig.init`):
#   uniform: p, mu and W each drawn uniformly in [0, 1] from the key, as Faster
#     AutoAugment's `Policy.__init__` does (nn.init.uniform_ on every parameter);
#   constant: p = init_probability, mu = init_magnitude and W = 0 everywhere.
INITS = ("uniform", "constant")
# Where a stored p enters the relaxed Bernoulli's logit it is kept this far
# from 0 and 1, so that the logit and its gradient stay finite.
_P_EPS = 1e-6


def _all_op_names() -> tuple[str, ...]:
  return tuple(ops_lib.OPS)


def check_op_names(names: Any, *, field: str = "ops") -> tuple[str, ...]:
  """Returns `names` as a tuple of known, distinct op names or raises."""
  if isinstance(names, str):
    raise TypeError(f"{field} must be a sequence of op names, got the string {names!r}; "
                    f"use a tuple such as ({names!r},).")
  try:
    names = tuple(names)
  except TypeError:
    raise TypeError(f"{field} must be a sequence of op names, got {names!r}.") from None
  if not names:
    raise ValueError(f"{field} is empty; give at least one op name from {_all_op_names()}.")
  known = _all_op_names()
  for name in names:
    if name not in known:
      raise ValueError(f"{field} contains the unknown op {name!r}; choose from {known}.")
  dups = sorted({n for n in names if names.count(n) > 1})
  if dups:
    raise ValueError(f"{field} lists {dups} more than once; give each op once.")
  return names


def check_positive_int(value: Any, field: str) -> int:
  """Returns `value` as an int >= 1 or raises, naming `field`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{field} must be an int, got {value!r}.")
  if value < 1:
    raise ValueError(f"{field} is {value}, but it must be >= 1.")
  return int(value)


def _check_temperature(value: Any, field: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(f"{field} must be a float, got {value!r}.")
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{field} is {value}, but it must be a finite float > 0.")
  return float(value)


def check_unit(value: Any, field: str) -> float:
  """Returns `value` as a float in [0, 1] or raises, naming `field`."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(f"{field} must be a float, got {value!r}.")
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{field} is {value}, but it must lie in [0, 1].")
  return float(value)


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Hyperparameters of the EPM (Section 3.2); `configs/default.py` `config.policy`.

  Attributes:
    num_subpolicies: L, the number of sub-policies.
    num_stages: K, the number of consecutive operations per sub-policy.
    ops: candidate op names (Table 1); default all 17 in table order.
    selection_temperature: T_sel of the op-selection softmax.
    bernoulli_temperature: T_b of the relaxed-Bernoulli application gate.
    init_probability: initial p of every (sub-policy, stage, op), in [0, 1]
      (``init='constant'``; also the p of the ops a discretised policy does not use).
    init_magnitude: initial mu, likewise.
    init: 'uniform' (Faster AutoAugment: p, mu and W uniform in [0, 1], drawn
      from the key) or 'constant' (p = init_probability, mu = init_magnitude,
      W = 0; this library's start before v2).
    parameterization: 'projected' (p and mu stored as values, projected into
      [0, 1] after each update) or 'sigmoid' (stored as logits).
  """
  num_subpolicies: int = 10
  num_stages: int = 2
  ops: tuple[str, ...] = dataclasses.field(default_factory=_all_op_names)
  selection_temperature: float = 0.05
  bernoulli_temperature: float = 0.1
  init_probability: float = 0.5
  init_magnitude: float = 0.5
  init: str = "uniform"
  parameterization: str = "projected"

  def __post_init__(self):
    set_ = functools.partial(object.__setattr__, self)
    set_("num_subpolicies", check_positive_int(self.num_subpolicies, "num_subpolicies"))
    set_("num_stages", check_positive_int(self.num_stages, "num_stages"))
    set_("ops", check_op_names(self.ops, field="ops"))
    set_("selection_temperature",
         _check_temperature(self.selection_temperature, "selection_temperature"))
    set_("bernoulli_temperature",
         _check_temperature(self.bernoulli_temperature, "bernoulli_temperature"))
    set_("init_probability", check_unit(self.init_probability, "init_probability"))
    set_("init_magnitude", check_unit(self.init_magnitude, "init_magnitude"))
    if self.init not in INITS:
      raise ValueError(f"init is {self.init!r}; use one of {INITS} ('uniform' is Faster "
                       "AutoAugment's start, 'constant' the fixed init_probability/init_magnitude).")
    if self.parameterization not in PARAMETERIZATIONS:
      raise ValueError(f"parameterization is {self.parameterization!r}; use one of "
                       f"{PARAMETERIZATIONS}.")

  @classmethod
  def from_config(cls, config: Any) -> "PolicyConfig":
    """Builds a PolicyConfig from a ConfigDict or mapping.

    Args:
      config: a `PolicyConfig`, an `ml_collections.ConfigDict` / mapping with
        (a subset of) this class's field names, such as `config.policy` of
        `configs/default.py`, or a whole experiment config holding `policy`.
        Other keys (source, learning_rate, b1, b2, ...) are ignored.

    Returns:
      The validated PolicyConfig.

    Raises:
      TypeError: if `config` is not a mapping.
      ValueError: if a field is out of range (the message names the field).
    """
    if isinstance(config, cls):
      return config
    if hasattr(config, "to_dict"):
      config = config.to_dict()
    if not isinstance(config, Mapping):
      raise TypeError(f"config must be a PolicyConfig, ConfigDict or mapping, got "
                      f"{type(config).__name__}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    if not fields & set(config) and "policy" in config:
      return cls.from_config(config["policy"])
    return cls(**{k: v for k, v in config.items() if k in fields})


@flax.struct.dataclass
class PolicyParams:
  """The learnable EPM parameters (M, P, W of Eq. 1), as stored.

  Leaves (all float32, shape (L, K, N) for L sub-policies, K stages, N ops):
    magnitude: mu itself in [0, 1] (``parameterization='projected'``), or its
      logit, mu = sigmoid(magnitude) (``'sigmoid'``).
    probability: p itself in [0, 1], or its logit, p = sigmoid(probability).
      In the sigmoid form p = 0 or 1 exactly is a -inf/+inf logit, a fixed
      point whose gradient is 0 (don't put weight decay on the policy).
    weight: selection logits W; the selection weights are
      softmax(weight / selection_temperature) over the last axis.
  Static (not leaves, so `jax.grad` and optax see only M, P, W):
    ops: the N candidate op names.
    selection_temperature, bernoulli_temperature: T_sel and T_b.
    parameterization: 'projected' or 'sigmoid' (see `PARAMETERIZATIONS`). The
      default 'sigmoid' is the form of files written before v2; `init_policy`
      sets it from the config. With 'projected', call `project` after every
      optimizer update (both stages do).
  """
  magnitude: jax.Array
  probability: jax.Array
  weight: jax.Array
  ops: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
  selection_temperature: float = flax.struct.field(pytree_node=False, default=0.05)
  bernoulli_temperature: float = flax.struct.field(pytree_node=False, default=0.1)
  parameterization: str = flax.struct.field(pytree_node=False, default="sigmoid")

  @property
  def num_subpolicies(self) -> int:
    return self.weight.shape[0]

  @property
  def num_stages(self) -> int:
    return self.weight.shape[1]


class PolicyValues(NamedTuple):
  """Constrained EPM parameters, each of shape (L, K, N)."""
  magnitude: jax.Array    # mu in [0, 1]
  probability: jax.Array  # p in [0, 1]
  selection: jax.Array    # softmax(W / T_sel), sums to 1 over the last axis


def _clip_through(x: jax.Array, lo: float, hi: float) -> jax.Array:
  """clip(x, lo, hi) in value, identity in gradient (a bound never stops the gradient)."""
  return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)


def constrain(params: PolicyParams) -> PolicyValues:
  """Maps stored parameters to their ranges: the one place where this happens.

  With 'projected', mu and p are the stored values; they are clipped to
  [0, 1] in value only (the gradient passes unchanged), so a value that sits
  on a bound after `project` still gets the gradient that can move it back.
  Faster AutoAugment's clamp passes no gradient, so its values stick once
  pushed past a bound.

  Args:
    params: `PolicyParams`.

  Returns:
    `PolicyValues` with mu, p (stored values, or sigmoid of the logits) and
    selection = softmax(W / T_sel) over the op axis.
  """
  if params.parameterization == "projected":
    magnitude = _clip_through(params.magnitude, 0.0, 1.0)
    probability = _clip_through(params.probability, 0.0, 1.0)
  else:
    magnitude = jax.nn.sigmoid(params.magnitude)
    probability = jax.nn.sigmoid(params.probability)
  return PolicyValues(
      magnitude=magnitude, probability=probability,
      selection=jax.nn.softmax(params.weight / params.selection_temperature, axis=-1))


def probability_logit(params: PolicyParams) -> jax.Array:
  """logit(p) of every (sub-policy, stage, op), the relaxed Bernoulli's location.

  'sigmoid' stores it. 'projected' computes it from p kept within 1e-6 of
  [0, 1]'s interior in value only, so it stays finite at p = 0 or 1 while the
  gradient still reaches p.
  """
  if params.parameterization == "sigmoid":
    return params.probability
  p = _clip_through(params.probability, _P_EPS, 1.0 - _P_EPS)
  return jnp.log(p) - jnp.log1p(-p)


def project(params: PolicyParams) -> PolicyParams:
  """Projects a 'projected' policy's mu and p back into [0, 1] (identity for 'sigmoid').

  Call it after every optimizer update: Adam moves a stored value by about
  the learning rate per step whatever the gradient's size, so p and mu can
  cross [0, 1] within a few hundred steps, where sigmoid logits would need
  thousands.
  """
  if params.parameterization != "projected":
    return params
  return params.replace(magnitude=jnp.clip(params.magnitude, 0.0, 1.0),
                        probability=jnp.clip(params.probability, 0.0, 1.0))


def init_policy(key: jax.Array, config: Any = None) -> PolicyParams:
  """Initialises the EPM parameters (Algorithm 1, "Initialize M, P, W").

  ``init='uniform'`` (the default) draws every p, mu and W independently and
  uniformly in [0, 1] from `key`, as Faster AutoAugment's reimplementation
  does (``nn.init.uniform_(p, 0, 1)`` on every policy parameter, selection
  weights included), so the sub-policies start different. ``init='constant'``
  starts every (sub-policy, stage, op) at p = init_probability,
  mu = init_magnitude and W = 0 (uniform selection); it ignores `key`. The
  paper does not say how M, P and W are initialised.

  Args:
    key: a JAX PRNG key.
    config: a `PolicyConfig`, or a ConfigDict/mapping with its field names
      (e.g. `config.policy` of `configs/default.py`); None means defaults.

  Returns:
    The raw `PolicyParams` with leaves of shape (L, K, N).

  Raises:
    ValueError/TypeError: for an invalid config field (named in the message).
  """
  check_key(key)
  cfg = PolicyConfig() if config is None else PolicyConfig.from_config(config)
  shape = (cfg.num_subpolicies, cfg.num_stages, len(cfg.ops))
  if cfg.init == "uniform":
    k_mag, k_prob, k_weight = jax.random.split(key, 3)
    mag = jax.random.uniform(k_mag, shape, jnp.float32)
    prob = jax.random.uniform(k_prob, shape, jnp.float32)
    weight = jax.random.uniform(k_weight, shape, jnp.float32)
  else:
    mag = jnp.full(shape, cfg.init_magnitude, jnp.float32)
    prob = jnp.full(shape, cfg.init_probability, jnp.float32)
    weight = jnp.zeros(shape, jnp.float32)
  return PolicyParams(
      magnitude=store_value(mag, cfg.parameterization),
      probability=store_value(prob, cfg.parameterization),
      weight=weight, ops=cfg.ops,
      selection_temperature=cfg.selection_temperature,
      bernoulli_temperature=cfg.bernoulli_temperature,
      parameterization=cfg.parameterization)


def store_value(values: Any, parameterization: str) -> jax.Array:
  """Values in [0, 1] in the stored form: themselves, or their logits (0 -> -inf, 1 -> +inf)."""
  values = jnp.asarray(values, jnp.float32)
  if parameterization == "projected":
    return values
  return jnp.log(values) - jnp.log1p(-values)


def hard_tables(params: PolicyParams) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top-1 op per (sub-policy, stage) by W, with its p and mu; each (L, K)."""
  values = constrain(params)
  index = jnp.argmax(params.weight, axis=-1)
  take = lambda a: jnp.take_along_axis(a, index[..., None], axis=-1)[..., 0]
  return index.astype(jnp.int32), take(values.probability), take(values.magnitude)


def selection_entropy(params: PolicyParams) -> jax.Array:
  """Entropy (nats) of each stage's op-selection weights, averaged over sub-policies.

  Args:
    params: a `PolicyParams`.

  Returns:
    float32 array of shape (K,): for stage k, mean over the L sub-policies of
    -sum_n w_{l,k,n} log w_{l,k,n}. log(N) means uniform, 0 one-hot.
  """
  w = constrain(params).selection
  logw = jnp.log(jnp.where(w > 0, w, 1.0))
  return jnp.mean(-jnp.sum(w * logw, axis=-1), axis=0)


def selection_stats(params: PolicyParams) -> dict[str, jax.Array]:
  """How far the policy is from its start: jit-able scalars for logging.

  Returns:
    ``entropy_stage{k}`` (`selection_entropy` of stage k), ``selected_probability``
    and ``selected_magnitude``: the mean over (L, K) of p and mu of each
    stage's top-1 op by W, i.e. of the discretised policy.
  """
  out = {f"entropy_stage{k}": h for k, h in enumerate(selection_entropy(params))}
  _, prob, mag = hard_tables(params)
  out["selected_probability"] = jnp.mean(prob)
  out["selected_magnitude"] = jnp.mean(mag)
  return out


def params_to_json(params: PolicyParams) -> str:
  """The raw parameters and static fields as JSON; `params_from_json` reads them back exactly.

  Unlike `Policy.to_json` (the discretised policy), this keeps every op's
  M, P and W, so a policy searched on one machine continues bit for bit on
  another (float32 values survive the round trip through JSON's doubles).
  """
  check_params(params)
  host = jax.device_get(params)
  return json.dumps({
      "format": _PARAMS_FORMAT, "ops": list(params.ops),
      "parameterization": params.parameterization,
      "selection_temperature": float(params.selection_temperature),
      "bernoulli_temperature": float(params.bernoulli_temperature),
      **{f: np.asarray(getattr(host, f), np.float32).tolist()
         for f in ("magnitude", "probability", "weight")}})


def params_from_json(text: str) -> PolicyParams:
  """Parses `params_to_json` output.

  A v1 file (written before the parameterization was recorded) holds sigmoid
  logits and loads as ``parameterization='sigmoid'``, exactly as it was searched.

  Raises:
    ValueError: for malformed JSON, another format, an unknown op or
      inconsistent shapes.
  """
  try:
    data = json.loads(text)
    if data.get("format") not in _PARAMS_FORMATS:
      raise ValueError(f"format {data.get('format')!r} is not one of {_PARAMS_FORMATS}; pass "
                       "params_to_json() output (policy_params.json of a search)")
    parameterization = data.get("parameterization", "sigmoid")
    if parameterization not in PARAMETERIZATIONS:
      raise ValueError(f"parameterization {parameterization!r} is not one of "
                       f"{PARAMETERIZATIONS}; the file was not written by params_to_json()")
    params = PolicyParams(
        **{f: jnp.asarray(np.asarray(data[f], np.float32)) for f in
           ("magnitude", "probability", "weight")},
        ops=check_op_names(data["ops"]),
        selection_temperature=float(data["selection_temperature"]),
        bernoulli_temperature=float(data["bernoulli_temperature"]),
        parameterization=parameterization)
  except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
    raise ValueError(f"text is not policy-params JSON ({type(e).__name__}: {e}); pass "
                     "params_to_json() output.") from None
  check_params(params)
  return params


def check_key(key: Any) -> None:
  """Raises unless `key` is a single JAX PRNG key (the EPM's key contract)."""
  rng.check_key(key, "the EPM", scalar=True)


def check_params(params: Any) -> None:
  """Raises unless `params` is a PolicyParams with consistent (L, K, N) leaves."""
  if not isinstance(params, PolicyParams):
    raise TypeError(f"params must be PolicyParams (from init_policy) or a Policy (from "
                    f"discretize), got {type(params).__name__}.")
  n = len(params.ops)
  if params.parameterization not in PARAMETERIZATIONS:
    raise ValueError(f"params.parameterization is {params.parameterization!r}; use one of "
                     f"{PARAMETERIZATIONS}.")
  for field in ("magnitude", "probability", "weight"):
    shape = getattr(params, field).shape
    if len(shape) != 3 or shape[2] != n or shape != params.weight.shape:
      raise ValueError(f"params.{field} has shape {shape}, but it must be (L, K, {n}) like "
                       f"params.weight {params.weight.shape}, one entry per op in params.ops.")


def movement(initial: PolicyParams, final: PolicyParams) -> dict[str, float]:
  """How far a policy moved: mean and max |change| of p, mu, W and the selection weights.

  p and mu are compared as values in [0, 1] (whatever the parameterization),
  W as the raw selection logits and ``selection`` as softmax(W / T_sel). A
  search whose p and mu all moved by less than a few hundredths has not
  learned them (`eriep_jax.search` warns below 0.05).

  Args:
    initial: the policy before training.
    final: the policy after training (same shape and ops).

  Returns:
    Floats ``{p,mu,w,selection}_{mean,max}_change``.

  Raises:
    ValueError: if the two policies differ in shape or ops.
  """
  check_params(initial)
  check_params(final)
  if initial.weight.shape != final.weight.shape or initial.ops != final.ops:
    raise ValueError(f"the policies differ: shapes {initial.weight.shape} and "
                     f"{final.weight.shape}, ops {initial.ops} and {final.ops}; compare a "
                     "policy with its own start.")
  a, b = jax.device_get(constrain(initial)), jax.device_get(constrain(final))
  out = {}
  for name, x, y in (("p", a.probability, b.probability), ("mu", a.magnitude, b.magnitude),
                     ("w", initial.weight, final.weight),
                     ("selection", a.selection, b.selection)):
    change = np.abs(np.asarray(y, np.float64) - np.asarray(x, np.float64))
    out[f"{name}_mean_change"] = float(change.mean())
    out[f"{name}_max_change"] = float(change.max())
  return out
