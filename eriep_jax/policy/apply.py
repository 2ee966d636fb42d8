"""Applying the EPM to images, x_p = S(x_o; M, P, W) (Eq. 1), in soft or hard mode.

`perturb` validates its inputs, draws each sample's sub-policy
(`sample_subpolicies`) and runs one of two jitted cores: soft mode
(`perturb_soft`, differentiable in M, P and W) for `PolicyParams`, and hard
mode (top-1 op, hard Bernoulli gate) for `PolicyParams` or a discretised
`Policy`, with the same random draws for the same key. The stage equations
are in the `eriep_jax.policy` package docstring.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import ops as ops_lib
from eriep_jax.policy.config import (PolicyParams, check_key, check_params, constrain,
                                     hard_tables, probability_logit)
from eriep_jax.policy.discrete import Policy

_MODES = ("soft", "hard")


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


def apply_op(name: str, images: jax.Array, magnitude: jax.Array, key: jax.Array) -> jax.Array:
  """Applies the op `name` with a per-op key; the default `call_op` of `perturb_soft`."""
  spec = ops_lib.get_op(name)
  if spec.needs_key:
    return spec.fn(images, magnitude, key=jax.random.fold_in(key, _op_salt(name)))
  return spec.fn(images, magnitude)


def split_keys(key: jax.Array, num_stages: int) -> tuple[jax.Array, jax.Array]:
  """Returns (sub-policy key, (K, 3) stage keys: gate, sign, op)."""
  key_sub, key_stages = jax.random.split(key)
  stage_keys = jax.random.split(key_stages, num_stages * 3)
  return key_sub, stage_keys.reshape((num_stages, 3) + stage_keys.shape[1:])


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - 1))


def perturb_soft(params: PolicyParams, images: jax.Array, key: jax.Array,
                 subpolicy: jax.Array, *,
                 call_op: Callable[..., jax.Array] = apply_op) -> jax.Array:
  """Soft (differentiable) EPM; see the `eriep_jax.policy` package docstring.

  Inputs are not validated (`perturb` does that). `call_op(name, images,
  magnitude, key)` applies one candidate; only `bench/train.py` replaces it,
  to measure the cost of the mixing alone.
  """
  values = constrain(params)
  batch = images.shape[0]
  _, stage_keys = split_keys(key, params.num_stages)
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
        stage_major(probability_logit(params)), stage_keys)
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
  _, stage_keys = split_keys(key, num_stages)
  rows = jnp.arange(batch)
  symmetric = [ops_lib.get_op(name).symmetric for name in candidates]

  def stage(x, xs):
    index_k, prob_k, mag_k, keys = xs                  # (L,) each, (3,) keys
    key_gate, key_sign, key_op = keys
    chosen = index_k[subpolicy]                        # (B,)
    applied = jax.random.uniform(key_gate, (batch,), jnp.float32) < prob_k[subpolicy]
    sign = jax.random.rademacher(key_sign, (batch,), jnp.float32)
    mu = mag_k[subpolicy]
    outs = [apply_op(name, x, sign * mu if sym else mu, key_op)
            for name, sym in zip(candidates, symmetric)]
    # x itself is a pseudo-candidate so the selection below never degenerates
    # to a single branch, which XLA would compile differently (1-ulp changes).
    picked = jnp.stack([x] + outs)[chosen + 1, rows]
    return jnp.where(_bcast(applied, x), picked, x), None

  xs = (op_index.T, probability.T, magnitude.T, stage_keys)
  return jax.lax.scan(stage, images, xs)[0]


@functools.partial(jax.jit, static_argnames=("mode",))
def _perturb_params(params, images, key, subpolicy, *, mode):
  if mode == "soft":
    return perturb_soft(params, images, key, subpolicy)
  index, prob, mag = hard_tables(params)
  return _perturb_hard(index, prob, mag, images, key, candidates=params.ops,
                       subpolicy=subpolicy)


@functools.partial(jax.jit, static_argnames=("candidates",))
def _perturb_policy(op_index, probability, magnitude, images, key, subpolicy, *, candidates):
  return _perturb_hard(op_index, probability, magnitude, images, key,
                       candidates=candidates, subpolicy=subpolicy)


def resolve_mode(params: Any, mode: str | None) -> str:
  """Validates `params` and `mode`; returns 'soft' or 'hard' (None picks the default)."""
  if mode is not None and mode not in _MODES:
    raise ValueError(f"mode is {mode!r}; use 'soft' (training) or 'hard' (discretised).")
  if isinstance(params, Policy):
    if mode == "soft":
      raise ValueError("mode='soft' needs PolicyParams; a discretised Policy only has "
                       "mode='hard' (or leave mode unset).")
    return "hard"
  check_params(params)
  return mode or "soft"


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key: jax.Array, batch: int, num_subpolicies: int) -> jax.Array:
  return sample_subpolicies(split_keys(key, 1)[0], batch, num_subpolicies)


def dispatch(params: PolicyParams | Policy, images: jax.Array, key: jax.Array, mode: str,
             subpolicy: jax.Array | None) -> jax.Array:
  """Runs the jitted core on validated inputs; `subpolicy` None draws it from `key`."""
  # The draw is passed into the jitted cores as data, so save_grid's forced
  # sub-policies reuse the same compiled function.
  if subpolicy is None:
    subpolicy = _draw(key, images.shape[0], params.num_subpolicies)
  if isinstance(params, Policy):
    candidates, index, prob, mag = params.hard_tables()
    return _perturb_policy(index, prob, mag, images, key, subpolicy, candidates=candidates)
  return _perturb_params(params, images, key, subpolicy, mode=mode)


def perturb(params: PolicyParams | Policy, images: jax.typing.ArrayLike, key: jax.Array, *,
            mode: str | None = None) -> jax.Array:
  """Applies the EPM, x_p = S(x_o; M, P, W) (Eq. 1).

  Each sample draws its sub-policy uniformly at random; see the
  `eriep_jax.policy` package docstring for the soft and hard stage equations.
  The function is pure and jit-able (`jax.jit(perturb, static_argnames='mode')`),
  and can be called inside `jax.pmap`. The same key gives the same output.

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
  mode = resolve_mode(params, mode)
  images = ops_lib.check_images(images, name="images")
  check_key(key)
  return dispatch(params, images, key, mode, None)
