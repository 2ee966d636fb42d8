"""The discretised EPM policy: the human-readable final policy of Section 3.2.

`discretize` takes the top-1 op per stage by W of a `PolicyParams`, giving a
`Policy` of L sub-policies of K `Operation`s (op, probability, magnitude);
`random_policy` draws one at random, the control for a searched one. A
`Policy` is a pytree and round-trips through JSON; `perturb` of
`eriep_jax.policy.apply` applies it exactly as hard mode applies the
`PolicyParams` it came from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import ops as ops_lib
from eriep_jax.policy.config import (PolicyConfig, PolicyParams, check_op_names, check_params,
                                     check_unit, hard_tables)

_JSON_FORMAT = "eriep_jax.policy/v1"


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
        check_op_names((name,), field=f"sub-policy {i} stage {j} op")
        p = check_unit(_to_float(p, f"sub-policy {i} stage {j} probability"),
                       f"sub-policy {i} stage {j} probability")
        m = check_unit(_to_float(m, f"sub-policy {i} stage {j} magnitude"),
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

  def hard_tables(self) -> tuple[tuple[str, ...], np.ndarray, jax.Array, jax.Array]:
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
  check_params(params)
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params)):
    raise TypeError("discretize got traced params (inside jax.jit/pmap/grad); call it on "
                    "concrete params outside the transformation, or use perturb(..., "
                    "mode='hard') inside it.")
  index, prob, mag = jax.device_get(jax.jit(hard_tables)(params))
  subs = tuple(
      tuple(Operation(params.ops[int(index[l, k])], float(prob[l, k]), float(mag[l, k]))
            for k in range(index.shape[1]))
      for l in range(index.shape[0]))
  return Policy(subpolicies=subs)


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
