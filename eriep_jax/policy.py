"""The Environmental Perturbation Module (EPM) policy of Section 3.2, Eq. (1).

The EPM is a set of L sub-policies S_1..S_L. Each sub-policy is K consecutive
stages, and every stage holds, for each of the N candidate operations of
Table 1, a learnable magnitude mu, a learnable probability p and a selection
weight w (the parameters M, P, W of Eq. (1)):

    x_p = S(x_o; M, P, W)                                          (Eq. 1)

Every sample of a batch draws its own sub-policy uniformly at random
(`sample_subpolicies`). Two ways to apply a stage k of sub-policy l exist:

* ``mode='soft'`` (training, differentiable in M, P and W): all N candidates
  are applied and mixed with the temperature-controlled softmax of Section 3.2,

      x_{k+1} = sum_n a_n * (g_n * O_n(x_k, s_n * mu_n) + (1 - g_n) * x_k),
      a = softmax(W[l, k] / T_sel),
      g_n ~ RelaxedBernoulli(p_n, T_b),

  where s_n is a random sign per sample for symmetric ops (+1 otherwise).
  Because sum_n a_n = 1 this is computed as
  (1 - sum_n c_n) x_k + sum_n c_n O_n with c_n = a_n g_n, which is the same
  function and returns x_k exactly where every g_n is 0.
* ``mode='hard'`` (the discretised policy "used in inference"): the top-1 op
  by W is applied with a hard Bernoulli(p) gate and a random sign. The
  `Policy` returned by `discretize` applies exactly the same function, with
  the same random draws for the same key.

Parameters are stored raw and unconstrained in `PolicyParams`; the only place
where they are mapped to their ranges is `constrain` (sigmoid for M and P,
softmax(W / T_sel) for the selection weights).

Images follow the ops contract of `eriep_jax.ops`: float32, NHWC, values in
[0, 1]; `perturb` checks it with `ops.check_images` before any compute.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import ops as ops_lib
from eriep_jax import rng

_JSON_FORMAT = "eriep_jax.policy/v1"
_MODES = ("soft", "hard")


def _all_op_names() -> tuple[str, ...]:
  return tuple(ops_lib.OPS)


def _check_op_names(names: Any, *, field: str = "ops") -> tuple[str, ...]:
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


def _check_positive_int(value: Any, field: str) -> int:
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


def _check_unit(value: Any, field: str) -> float:
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
    init_probability: initial p of every (sub-policy, stage, op), in [0, 1].
    init_magnitude: initial mu of every (sub-policy, stage, op), in [0, 1].
  """
  num_subpolicies: int = 10
  num_stages: int = 2
  ops: tuple[str, ...] = dataclasses.field(default_factory=_all_op_names)
  selection_temperature: float = 0.05
  bernoulli_temperature: float = 0.1
  init_probability: float = 0.5
  init_magnitude: float = 0.5

  def __post_init__(self):
    set_ = functools.partial(object.__setattr__, self)
    set_("num_subpolicies", _check_positive_int(self.num_subpolicies, "num_subpolicies"))
    set_("num_stages", _check_positive_int(self.num_stages, "num_stages"))
    set_("ops", _check_op_names(self.ops, field="ops"))
    set_("selection_temperature",
         _check_temperature(self.selection_temperature, "selection_temperature"))
    set_("bernoulli_temperature",
         _check_temperature(self.bernoulli_temperature, "bernoulli_temperature"))
    set_("init_probability", _check_unit(self.init_probability, "init_probability"))
    set_("init_magnitude", _check_unit(self.init_magnitude, "init_magnitude"))

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
  """The learnable EPM parameters (M, P, W of Eq. 1), raw and unconstrained.

  Leaves (all float32, shape (L, K, N) for L sub-policies, K stages, N ops):
    magnitude: raw magnitudes; mu = sigmoid(magnitude), in [0, 1].
    probability: raw probabilities, i.e. logits; p = sigmoid(probability).
      p = 0 or 1 exactly is stored as a -inf/+inf logit: a fixed point whose
      gradient is 0 (don't put weight decay on the policy).
    weight: selection logits W; the selection weights are
      softmax(weight / selection_temperature) over the last axis.
  Static (not leaves, so `jax.grad` and optax see only M, P, W):
    ops: the N candidate op names.
    selection_temperature, bernoulli_temperature: T_sel and T_b.
  """
  magnitude: jax.Array
  probability: jax.Array
  weight: jax.Array
  ops: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
  selection_temperature: float = flax.struct.field(pytree_node=False, default=0.05)
  bernoulli_temperature: float = flax.struct.field(pytree_node=False, default=0.1)

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


def constrain(params: PolicyParams) -> PolicyValues:
  """Maps raw parameters to their ranges: the one place where this happens.

  Sigmoid rather than clipping keeps gradients alive everywhere (a clipped
  parameter that leaves [0, 1] would never get a gradient again).

  Args:
    params: raw `PolicyParams`.

  Returns:
    `PolicyValues` with mu = sigmoid(M), p = sigmoid(P) and
    selection = softmax(W / T_sel) over the op axis.
  """
  return PolicyValues(
      magnitude=jax.nn.sigmoid(params.magnitude),
      probability=jax.nn.sigmoid(params.probability),
      selection=jax.nn.softmax(params.weight / params.selection_temperature, axis=-1))


def _logit(p: float) -> float:
  if p <= 0.0:
    return -math.inf
  if p >= 1.0:
    return math.inf
  return math.log(p) - math.log1p(-p)


def init_policy(key: jax.Array, config: Any = None) -> PolicyParams:
  """Initialises the EPM parameters (Algorithm 1, "Initialize M, P, W").

  Every (sub-policy, stage, op) starts at p = init_probability and
  mu = init_magnitude, and W = 0 (uniform selection), as Faster AutoAugment
  does; the sub-policies are then told apart by the data they see. The
  initialisation is deterministic: `key` is validated and kept for API
  symmetry with the other `init` functions.

  Args:
    key: a JAX PRNG key.
    config: a `PolicyConfig`, or a ConfigDict/mapping with its field names
      (e.g. `config.policy` of `configs/default.py`); None means defaults.

  Returns:
    The raw `PolicyParams` with leaves of shape (L, K, N).

  Raises:
    ValueError/TypeError: for an invalid config field (named in the message).
  """
  _check_key(key)
  cfg = PolicyConfig() if config is None else PolicyConfig.from_config(config)
  shape = (cfg.num_subpolicies, cfg.num_stages, len(cfg.ops))
  return PolicyParams(
      magnitude=jnp.full(shape, _logit(cfg.init_magnitude), jnp.float32),
      probability=jnp.full(shape, _logit(cfg.init_probability), jnp.float32),
      weight=jnp.zeros(shape, jnp.float32),
      ops=cfg.ops,
      selection_temperature=cfg.selection_temperature,
      bernoulli_temperature=cfg.bernoulli_temperature)


def sample_subpolicies(key: jax.Array, batch_size: int, num_subpolicies: int) -> jax.Array:
  """Draws each sample's sub-policy index uniformly from {0, ..., L-1}.

  Args:
    key: a JAX PRNG key.
    batch_size: B, the number of samples.
    num_subpolicies: L.

  Returns:
    int32 array of shape (B,).
  """
  return jax.random.randint(key, (batch_size,), 0, num_subpolicies, dtype=jnp.int32)


def _op_salt(name: str) -> int:
  # A key per op that does not depend on which other ops are candidates, so
  # hard mode and a discretised Policy feed identical keys to cutout etc.
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _call_op(name: str, images: jax.Array, magnitude: jax.Array, key: jax.Array) -> jax.Array:
  spec = ops_lib.get_op(name)
  if spec.needs_key:
    return spec.fn(images, magnitude, key=jax.random.fold_in(key, _op_salt(name)))
  return spec.fn(images, magnitude)


def _split_keys(key: jax.Array, num_stages: int) -> tuple[jax.Array, jax.Array]:
  """Returns (sub-policy key, (K, 3) stage keys: gate, sign, op)."""
  key_sub, key_stages = jax.random.split(key)
  stage_keys = jax.random.split(key_stages, num_stages * 3)
  return key_sub, stage_keys.reshape((num_stages, 3) + stage_keys.shape[1:])


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - 1))


def _perturb_soft(params: PolicyParams, images: jax.Array, key: jax.Array,
                  subpolicy: jax.Array, *, call_op=_call_op) -> jax.Array:
  """Soft (differentiable) EPM; see the module docstring.

  `call_op(name, images, magnitude, key)` applies one candidate; only
  `bench/train.py` replaces it, to measure the cost of the mixing alone.
  """
  values = constrain(params)
  batch = images.shape[0]
  _, stage_keys = _split_keys(key, params.num_stages)
  num_ops = len(params.ops)
  symmetric = np.array([ops_lib.get_op(n).symmetric for n in params.ops])

  # Stages 2..K are scan steps, so the N-op body is traced twice, not K times.
  def stage(x, xs):
    mu_k, sel_k, logit_k, keys = xs                    # (L, N) each, (3,) keys
    key_gate, key_sign, key_op = keys
    mu, sel, logit_p = mu_k[subpolicy], sel_k[subpolicy], logit_k[subpolicy]   # (B, N)
    # Relaxed Bernoulli (binary Concrete): sigmoid((logit p + logistic) / T_b).
    noise = jax.random.logistic(key_gate, (batch, num_ops), jnp.float32)
    gate = jax.nn.sigmoid((logit_p + noise) / params.bernoulli_temperature)
    sign = jax.random.rademacher(key_sign, (batch, num_ops), jnp.float32)
    mag = jnp.where(symmetric, sign * mu, mu)
    coef = sel * gate                                  # (B, N)
    # The N outputs stacked and mixed with one batched matmul: its backward
    # gives all N coefficient gradients in one dot instead of N reductions over
    # the images (about a quarter faster on CPU than a running sum).
    outs = jnp.stack([call_op(name, x, mag[:, n], key_op)
                      for n, name in enumerate(params.ops)], axis=1)     # (B, N, H, W, C)
    outs = outs.reshape(batch, num_ops, -1)
    mixed = jnp.einsum("bn,bnp->bp", coef, outs).reshape(x.shape)
    return _bcast(1.0 - jnp.sum(coef, axis=1), x) * x + mixed, None

  stage_major = lambda a: jnp.swapaxes(a, 0, 1)        # (L, K, N) -> (K, L, N)
  xs = (stage_major(values.magnitude), stage_major(values.selection),
        stage_major(params.probability), stage_keys)
  # Stage 1 runs outside the scan: its input is data, so the backward pass
  # skips the image gradient of its ops (e.g. rotate's scatter-add).
  x, _ = stage(images, jax.tree.map(lambda a: a[0], xs))
  if params.num_stages == 1:
    return x
  return jax.lax.scan(stage, x, jax.tree.map(lambda a: a[1:], xs))[0]


def _perturb_hard(op_index: jax.Array, probability: jax.Array, magnitude: jax.Array,
                  images: jax.Array, key: jax.Array, *, candidates: tuple[str, ...],
                  subpolicy: jax.Array) -> jax.Array:
  """Applies a discrete policy.

  Args:
    op_index: (L, K) int, index into `candidates` of each stage's op.
    probability: (L, K) float32 p of each stage's op.
    magnitude: (L, K) float32 mu of each stage's op.
    images: (B, H, W, C) float32 images.
    key: PRNG key; same draws whatever `candidates` is.
    candidates: op names that `op_index` indexes.
    subpolicy: (B,) int sub-policy index of each sample.

  Returns:
    The perturbed images.
  """
  batch = images.shape[0]
  num_stages = op_index.shape[1]
  _, stage_keys = _split_keys(key, num_stages)
  rows = jnp.arange(batch)
  symmetric = [ops_lib.get_op(name).symmetric for name in candidates]

  def stage(x, xs):
    index_k, prob_k, mag_k, keys = xs                  # (L,) each, (3,) keys
    key_gate, key_sign, key_op = keys
    chosen = index_k[subpolicy]                        # (B,)
    applied = jax.random.uniform(key_gate, (batch,), jnp.float32) < prob_k[subpolicy]
    sign = jax.random.rademacher(key_sign, (batch,), jnp.float32)
    mu = mag_k[subpolicy]
    outs = [_call_op(name, x, sign * mu if sym else mu, key_op)
            for name, sym in zip(candidates, symmetric)]
    # x itself is a pseudo-candidate so the selection below never degenerates
    # to a single branch, which XLA would compile differently (1-ulp changes).
    picked = jnp.stack([x] + outs)[chosen + 1, rows]
    return jnp.where(_bcast(applied, x), picked, x), None

  xs = (op_index.T, probability.T, magnitude.T, stage_keys)
  return jax.lax.scan(stage, images, xs)[0]


def _hard_tables(params: PolicyParams) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Top-1 op per (sub-policy, stage) by W, with its p and mu; each (L, K)."""
  values = constrain(params)
  index = jnp.argmax(params.weight, axis=-1)
  take = lambda a: jnp.take_along_axis(a, index[..., None], axis=-1)[..., 0]
  return index.astype(jnp.int32), take(values.probability), take(values.magnitude)


@functools.partial(jax.jit, static_argnames=("mode",))
def _perturb_params(params, images, key, subpolicy, *, mode):
  if mode == "soft":
    return _perturb_soft(params, images, key, subpolicy)
  index, prob, mag = _hard_tables(params)
  return _perturb_hard(index, prob, mag, images, key, candidates=params.ops,
                       subpolicy=subpolicy)


@functools.partial(jax.jit, static_argnames=("candidates",))
def _perturb_policy(op_index, probability, magnitude, images, key, subpolicy, *, candidates):
  return _perturb_hard(op_index, probability, magnitude, images, key,
                       candidates=candidates, subpolicy=subpolicy)


class Operation(NamedTuple):
  """One stage of a discretised sub-policy: (op, probability, magnitude)."""
  op: str
  probability: float
  magnitude: float


def _to_float(value: Any, field: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(f"{field} must be a number, got {value!r}.")
  return float(value)


@dataclasses.dataclass(frozen=True)
class Policy:
  """A discretised EPM policy: L sub-policies of K (op, probability, magnitude).

  This is the human-readable final policy "used in inference" (Section 3.2).
  `perturb(policy, images, key)` applies it exactly as hard mode applies the
  `PolicyParams` it came from. It is hashable, and a pytree whose leaves are
  the probabilities and magnitudes (op names are static), so it can be passed
  to `jax.jit`/`jax.pmap` as an argument.

  Attributes:
    subpolicies: tuple of L tuples of K `Operation`s. Magnitudes are in
      [0, 1]; symmetric ops get a random sign per sample when applied.
  """
  subpolicies: tuple[tuple[Operation, ...], ...]

  def __post_init__(self):
    subs = self.subpolicies
    if isinstance(subs, (str, bytes)) or not isinstance(subs, Sequence) or not subs:
      raise ValueError(f"subpolicies must be a non-empty list of sub-policies, got {subs!r}.")
    clean = []
    for i, sub in enumerate(subs):
      if isinstance(sub, (str, bytes)) or not isinstance(sub, Sequence) or not sub:
        raise ValueError(f"sub-policy {i} must be a non-empty list of (op, probability, "
                         f"magnitude), got {sub!r}.")
      stages = []
      for j, stage in enumerate(sub):
        if isinstance(stage, Mapping):
          stage = (stage.get("op"), stage.get("probability"), stage.get("magnitude"))
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 3:
          raise ValueError(f"sub-policy {i} stage {j} must be (op, probability, magnitude), "
                           f"got {stage!r}.")
        name, p, m = stage
        _check_op_names((name,), field=f"sub-policy {i} stage {j} op")
        p = _check_unit(_to_float(p, f"sub-policy {i} stage {j} probability"),
                        f"sub-policy {i} stage {j} probability")
        m = _check_unit(_to_float(m, f"sub-policy {i} stage {j} magnitude"),
                        f"sub-policy {i} stage {j} magnitude")
        stages.append(Operation(name, p, m))
      clean.append(tuple(stages))
    lengths = sorted({len(s) for s in clean})
    if len(lengths) > 1:
      raise ValueError(f"sub-policies have different numbers of stages {lengths}; give every "
                       "sub-policy the same K (pad with an op of probability 0).")
    object.__setattr__(self, "subpolicies", tuple(clean))

  @property
  def num_subpolicies(self) -> int:
    return len(self.subpolicies)

  @property
  def num_stages(self) -> int:
    return len(self.subpolicies[0])

  def __len__(self) -> int:
    return len(self.subpolicies)

  def __getitem__(self, i: int) -> tuple[Operation, ...]:
    return self.subpolicies[i]

  def _tables(self) -> tuple[tuple[str, ...], np.ndarray, jax.Array, jax.Array]:
    """(candidates, op_index, probability, magnitude) in the hard-mode layout."""
    candidates = tuple(sorted({op.op for sub in self.subpolicies for op in sub}))
    index = np.array([[candidates.index(op.op) for op in sub] for sub in self.subpolicies],
                     np.int32)
    # jnp (not np): the values may be tracers when the Policy is a jit argument.
    prob = jnp.asarray([[op.probability for op in sub] for sub in self.subpolicies], jnp.float32)
    mag = jnp.asarray([[op.magnitude for op in sub] for sub in self.subpolicies], jnp.float32)
    return candidates, index, prob, mag

  def to_json(self, *, indent: int | None = 2) -> str:
    """Serialises the policy; `Policy.from_json` reads it back exactly."""
    return json.dumps({
        "format": _JSON_FORMAT,
        "subpolicies": [[{"op": op.op, "probability": op.probability,
                          "magnitude": op.magnitude} for op in sub]
                        for sub in self.subpolicies]}, indent=indent)

  @classmethod
  def from_json(cls, text: str) -> "Policy":
    """Parses `to_json` output (or a bare list of sub-policies).

    Args:
      text: JSON text.

    Returns:
      The Policy.

    Raises:
      ValueError: for malformed JSON, an unknown format, an unknown op or a
        probability/magnitude outside [0, 1].
    """
    try:
      data = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
      raise ValueError(f"text is not valid policy JSON ({e}); pass Policy.to_json() output.") \
          from None
    if isinstance(data, Mapping):
      if data.get("format", _JSON_FORMAT) != _JSON_FORMAT:
        raise ValueError(f"format {data.get('format')!r} is not {_JSON_FORMAT!r}.")
      data = data.get("subpolicies")
    return cls(subpolicies=data)

  def summary(self) -> str:
    """Returns the policy as a text table, one row per (sub-policy, stage)."""
    width = max(len("op"), *(len(op.op) for sub in self.subpolicies for op in sub))
    lines = [f"{'sub':>4}  {'stage':>5}  {'op':<{width}}  {'category':<8}  "
             f"{'p':>6}  {'magnitude':>9}",
             "-" * (4 + 2 + 5 + 2 + width + 2 + 8 + 2 + 6 + 2 + 9)]
    for i, sub in enumerate(self.subpolicies):
      for j, op in enumerate(sub):
        spec = ops_lib.get_op(op.op)
        if spec.magnitude_type == "none":
          mag = "-"
        else:
          mag = ("+/-" if spec.symmetric else "") + f"{op.magnitude:.3f}"
        lines.append(f"{i + 1:>4}  {j + 1:>5}  {op.op:<{width}}  {spec.category:<8}  "
                     f"{op.probability:>6.3f}  {mag:>9}")
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.summary()


def _flatten_policy(policy: Policy) -> tuple[list[Any], tuple[tuple[str, ...], ...]]:
  leaves = [v for sub in policy.subpolicies for op in sub for v in op[1:]]
  return leaves, tuple(tuple(op.op for op in sub) for sub in policy.subpolicies)


def _unflatten_policy(names: tuple[tuple[str, ...], ...], leaves: Sequence[Any]) -> Policy:
  # No validation: jax rebuilds pytrees with tracers or placeholders as leaves.
  values = iter(leaves)
  policy = object.__new__(Policy)
  object.__setattr__(policy, "subpolicies", tuple(
      tuple(Operation(name, next(values), next(values)) for name in sub) for sub in names))
  return policy


# Probabilities and magnitudes are leaves (op names are static), so under jit a
# Policy is traced data, not baked-in constants: no recompile per policy, and
# the same bits as hard mode.
jax.tree_util.register_pytree_node(Policy, _flatten_policy, _unflatten_policy)


def discretize(params: PolicyParams) -> Policy:
  """Takes the top-1 op per stage by W: the final policy of Section 3.2.

  Ties in W go to the op listed first in `params.ops`.

  Args:
    params: raw `PolicyParams` (concrete, not traced).

  Returns:
    The `Policy`; `perturb(policy, x, key)` equals
    `perturb(params, x, key, mode='hard')`.

  Raises:
    TypeError: if `params` is not a PolicyParams, or is traced (inside jit).
  """
  _check_params(params)
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params)):
    raise TypeError("discretize got traced params (inside jax.jit/pmap/grad); call it on "
                    "concrete params outside the transformation, or use perturb(..., "
                    "mode='hard') inside it.")
  index, prob, mag = jax.device_get(jax.jit(_hard_tables)(params))
  subs = tuple(
      tuple(Operation(params.ops[int(index[l, k])], float(prob[l, k]), float(mag[l, k]))
            for k in range(index.shape[1]))
      for l in range(index.shape[0]))
  return Policy(subpolicies=subs)


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
  _, prob, mag = _hard_tables(params)
  out["selected_probability"] = jnp.mean(prob)
  out["selected_magnitude"] = jnp.mean(mag)
  return out


def random_policy(seed: int, config: Any = None) -> Policy:
  """A random discrete policy, the control for a searched one.

  Every stage of every sub-policy draws its op uniformly from ``config.ops``
  and its probability and magnitude uniformly from [0, 1] (the search
  space's ranges; symmetric ops still get a random sign when applied), from
  ``numpy.random.default_rng(seed)``. The same seed gives the same policy on
  every machine.

  Args:
    seed: a non-negative int (``config.policy.seed``).
    config: a `PolicyConfig` or mapping (L, K, ops); None means defaults.

  Returns:
    A `Policy` of L sub-policies of K stages.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"policy seed {seed!r} must be a non-negative int, e.g. 0.")
  cfg = PolicyConfig() if config is None else PolicyConfig.from_config(config)
  gen = np.random.default_rng(int(seed))
  subs = []
  for _ in range(cfg.num_subpolicies):
    stages = []
    for _ in range(cfg.num_stages):
      op = cfg.ops[int(gen.integers(len(cfg.ops)))]
      prob, mag = gen.uniform(0.0, 1.0, size=2)
      stages.append(Operation(op, float(prob), float(mag)))
    subs.append(tuple(stages))
  return Policy(subpolicies=tuple(subs))


_PARAMS_FORMAT = "eriep_jax.policy_params/v1"


def params_to_json(params: PolicyParams) -> str:
  """The raw parameters and static fields as JSON; `params_from_json` reads them back exactly.

  Unlike `Policy.to_json` (the discretised policy), this keeps every op's
  M, P and W, so a policy searched on one machine continues bit for bit on
  another (float32 values survive the round trip through JSON's doubles).
  """
  _check_params(params)
  host = jax.device_get(params)
  return json.dumps({
      "format": _PARAMS_FORMAT, "ops": list(params.ops),
      "selection_temperature": float(params.selection_temperature),
      "bernoulli_temperature": float(params.bernoulli_temperature),
      **{f: np.asarray(getattr(host, f), np.float32).tolist()
         for f in ("magnitude", "probability", "weight")}})


def params_from_json(text: str) -> PolicyParams:
  """Parses `params_to_json` output.

  Raises:
    ValueError: for malformed JSON, another format, an unknown op or
      inconsistent shapes.
  """
  try:
    data = json.loads(text)
    if data.get("format") != _PARAMS_FORMAT:
      raise ValueError(f"format {data.get('format')!r} is not {_PARAMS_FORMAT!r}")
    params = PolicyParams(
        **{f: jnp.asarray(np.asarray(data[f], np.float32)) for f in
           ("magnitude", "probability", "weight")},
        ops=_check_op_names(data["ops"]),
        selection_temperature=float(data["selection_temperature"]),
        bernoulli_temperature=float(data["bernoulli_temperature"]))
  except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
    raise ValueError(f"text is not policy-params JSON ({type(e).__name__}: {e}); pass "
                     "params_to_json() output.") from None
  _check_params(params)
  return params


def _check_key(key: Any) -> None:
  rng.check_key(key, "the EPM", scalar=True)


def _check_params(params: Any) -> None:
  if not isinstance(params, PolicyParams):
    raise TypeError(f"params must be PolicyParams (from init_policy) or a Policy (from "
                    f"discretize), got {type(params).__name__}.")
  n = len(params.ops)
  for field in ("magnitude", "probability", "weight"):
    shape = getattr(params, field).shape
    if len(shape) != 3 or shape[2] != n or shape != params.weight.shape:
      raise ValueError(f"params.{field} has shape {shape}, but it must be (L, K, {n}) like "
                       f"params.weight {params.weight.shape}, one entry per op in params.ops.")


def _resolve_mode(params: Any, mode: str | None) -> str:
  if mode is not None and mode not in _MODES:
    raise ValueError(f"mode is {mode!r}; use 'soft' (training) or 'hard' (discretised).")
  if isinstance(params, Policy):
    if mode == "soft":
      raise ValueError("mode='soft' needs PolicyParams; a discretised Policy only has "
                       "mode='hard' (or leave mode unset).")
    return "hard"
  _check_params(params)
  return mode or "soft"


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key: jax.Array, batch: int, num_subpolicies: int) -> jax.Array:
  return sample_subpolicies(_split_keys(key, 1)[0], batch, num_subpolicies)


def _apply(params: Any, images: jax.Array, key: jax.Array, mode: str,
           subpolicy: jax.Array | None) -> jax.Array:
  # The draw is passed into the jitted cores as data, so save_grid's forced
  # sub-policies reuse the same compiled function.
  if subpolicy is None:
    subpolicy = _draw(key, images.shape[0], params.num_subpolicies)
  if isinstance(params, Policy):
    candidates, index, prob, mag = params._tables()
    return _perturb_policy(index, prob, mag, images, key, subpolicy, candidates=candidates)
  return _perturb_params(params, images, key, subpolicy, mode=mode)


def perturb(params: PolicyParams | Policy, images: jax.typing.ArrayLike, key: jax.Array, *,
            mode: str | None = None) -> jax.Array:
  """Applies the EPM, x_p = S(x_o; M, P, W) (Eq. 1).

  Each sample draws its sub-policy uniformly at random; see the module
  docstring for the soft and hard stage equations. The function is pure and
  jit-able (`jax.jit(perturb, static_argnames='mode')`), and can be called
  inside `jax.pmap`. The same key gives the same output.

  Args:
    params: `PolicyParams` (soft or hard mode) or a discretised `Policy`
      (always applied as hard mode, with the same draws as
      `perturb(params, ..., mode='hard')` for the same key).
    images: float32 images in [0, 1], shape (B, H, W, C), the ops contract.
    key: a JAX PRNG key.
    mode: 'soft' (differentiable in M, P, W; training) or 'hard' (top-1 op
      per stage by W, hard Bernoulli gate; not meant for gradients). None
      means 'soft' for PolicyParams and 'hard' for a Policy.

  Returns:
    The perturbed images, same shape and dtype as `images`.

  Raises:
    ValueError: for an unknown mode, images that break the ops contract,
      mode='soft' with a Policy, or inconsistent parameter shapes.
    TypeError: for a params or key of the wrong type.
  """
  mode = _resolve_mode(params, mode)
  images = ops_lib.check_images(images, name="images")
  _check_key(key)
  return _apply(params, images, key, mode, None)


def _subpolicy_label(sub: Sequence[Operation]) -> str:
  parts = []
  for op in sub:
    spec = ops_lib.get_op(op.op)
    mag = "" if spec.magnitude_type == "none" else f" m={op.magnitude:.2f}"
    parts.append(f"{op.op} p={op.probability:.2f}{mag}")
  return " > ".join(parts)


def save_grid(params_or_policy: PolicyParams | Policy, images: jax.typing.ArrayLike,
              path: str | os.PathLike, key: jax.Array, *, mode: str = "hard",
              max_images: int = 8, dpi: int = 100) -> str | os.PathLike:
  """Writes a PNG: the original images on top, each sub-policy's output below.

  Row l + 1 applies sub-policy l to every image (same key for every row, so
  rows differ only by their sub-policy). Rows are labelled with the
  discretised sub-policy (op, p, magnitude).

  Args:
    params_or_policy: `PolicyParams` or a discretised `Policy`.
    images: float32 images in [0, 1], shape (B, H, W, C); the first
      `max_images` are shown.
    path: output PNG path (str or os.PathLike).
    key: a JAX PRNG key.
    mode: 'hard' (default, what the discretised policy does) or 'soft'
      (PolicyParams only).
    max_images: number of columns.
    dpi: figure resolution.

  Returns:
    `path`.

  Raises:
    ValueError/TypeError: as `perturb`, or for max_images < 1.
  """
  # Matplotlib is only needed here; Figure + Agg canvas avoids pyplot's global state.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  mode = _resolve_mode(params_or_policy, mode)
  max_images = _check_positive_int(max_images, "max_images")
  images = ops_lib.check_images(images, name="images")[:max_images]
  _check_key(key)
  policy = (params_or_policy if isinstance(params_or_policy, Policy)
            else discretize(params_or_policy))
  batch, num_rows = images.shape[0], policy.num_subpolicies + 1
  rows = [np.asarray(images)]
  for l in range(policy.num_subpolicies):
    forced = jnp.full((batch,), l, jnp.int32)
    rows.append(np.asarray(_apply(params_or_policy, images, key, mode, forced)))
  fig = Figure(figsize=(1.1 * batch, 1.3 * num_rows), dpi=dpi)
  FigureCanvasAgg(fig)
  axes = fig.subplots(num_rows, batch, squeeze=False)
  for r in range(num_rows):
    for c in range(batch):
      ax = axes[r, c]
      img = np.clip(rows[r][c], 0.0, 1.0)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1
                else None, vmin=0.0, vmax=1.0, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
    label = "original" if r == 0 else f"S{r} ({mode}): {_subpolicy_label(policy[r - 1])}"
    axes[r, 0].set_title(label, loc="left", fontsize=7)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1.0 - 0.25 / num_rows,
                      wspace=0.05, hspace=0.3)
  fig.savefig(path)
  return path
