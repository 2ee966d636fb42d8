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
  """Applies the op `name` with a per-op key: `apply_drawn(name, x, m, draw_op(name, x, key))`.

  The EPM's magnitudes lie in [-1, 1] (mu in [0, 1], `constrain`; a `Policy`
  checks its own), so it uses each op's `unit_fn` where it has one.
  """
  return apply_drawn(name, images, magnitude, draw_op(name, images, key))


def draw_op(name: str, images: jax.Array, key: jax.Array) -> jax.Array | None:
  """The random choice of op `name` for the whole batch (its `OpSpec.draw`), else None.

  The key is the stage's op key folded with a salt of the op's name, so an op
  draws the same whichever other ops are candidates.
  """
  spec = ops_lib.get_op(name)
  if spec.draw is None:
    return None
  return spec.draw(jax.random.fold_in(key, _op_salt(name)), images)


def apply_drawn(name: str, images: jax.Array, magnitude: jax.Array,
                drawn: jax.Array | None) -> jax.Array:
  """Applies op `name` given its random choice `drawn` (`draw_op`); the default `call_op`.

  Deterministic in its arguments and per image, so a slice of the batch with
  the same slice of `magnitude` and `drawn` gives the same slice of the result.
  """
  spec = ops_lib.get_op(name)
  if spec.apply_drawn is not None:
    return spec.apply_drawn(images, magnitude, drawn)
  return (spec.unit_fn or spec.fn)(images, magnitude)


def split_keys(key: jax.Array, num_stages: int) -> tuple[jax.Array, jax.Array]:
  """Returns (sub-policy key, (K, 3) stage keys: gate, sign, op)."""
  key_sub, key_stages = jax.random.split(key)
  stage_keys = jax.random.split(key_stages, num_stages * 3)
  return key_sub, stage_keys.reshape((num_stages, 3) + stage_keys.shape[1:])


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - 1))


@jax.custom_vjp
def _mix(coef: jax.Array, *outs: jax.Array) -> jax.Array:
  """sum_n coef[:, n] * outs[n], the candidates' outputs mixed per sample.

  Written for CPU memory traffic, with the same value as the plain sum:
  * N - 1 terms are summed elementwise, which XLA fuses into one pass over
    the N - 1 outputs (stacking them into a (B, N, P) array, as a batched
    matmul would need, costs a full copy);
  * the last term is added by a batched matmul with K = 2. Its result is
    materialised, which matters: an elementwise sum would be fused into each
    of the next stage's N candidates, each re-reading all N outputs.
  * The backward pass is written out: each candidate receives its cotangent
    coef[:, n] * g directly, which XLA fuses into the candidate's own
    backward pass, and the coefficients' gradients are N per-sample dot
    products, with no (B, N, P) outer product.
  Against a stack and one batched matmul with autodiff's backward pass, the
  ERIEP step is about 5% faster on 2 CPU cores.
  """
  return _mix_fwd(coef, *outs)[0]


def _mix_fwd(coef, *outs):
  b, n = coef.shape
  partial = sum((_bcast(coef[:, k], outs[k]) * outs[k] for k in range(n - 1)),
                start=jnp.zeros_like(outs[-1]))
  last = jnp.stack([partial, outs[-1]], axis=1).reshape(b, 2, -1)
  weights = jnp.stack([jnp.ones_like(coef[:, -1]), coef[:, -1]], axis=1)
  mixed = jnp.einsum("bk,bkp->bp", weights, last).reshape(outs[0].shape)
  return mixed, (coef, outs)


def _mix_bwd(res, g):
  coef, outs = res
  b, n = coef.shape
  flat = g.reshape(b, -1)
  g_coef = jnp.stack([jnp.sum(flat * o.reshape(b, -1), axis=1) for o in outs], axis=1)
  return (g_coef,) + tuple(_bcast(coef[:, k], g) * g for k in range(n))


_mix.defvjp(_mix_fwd, _mix_bwd)


# The soft EPM's working set per image and stage: all N candidates' outputs
# and their saved values for the backward pass. On the CPU a 32x32 batch of
# 128 spills the caches, and the EPM runs faster (about 15% for L = 10, K = 2
# and all 17 ops on 2 cores, `bench/policy.py`) in chunks of about this many
# bytes of images, each recomputed in the backward pass (`_chunk_count`).
SOFT_CHUNK_BYTES = 32 * 32 * 32 * 3 * 4


@jax.custom_vjp
def _own_gradient(x: jax.Array) -> jax.Array:
  """The identity; its backward pass computes the cotangent in a fusion of its own.

  A chunk's input gradient is the sum of the N candidates' image gradients.
  XLA otherwise fuses that sum into the loop's write of the chunk's gradient
  into the batch's, a fusion that ran slowly on the CPU. Passed through a
  batched matmul with K = 2 (the cotangent and a zero row, weights 1 and 0,
  so the value is exactly the cotangent), the sum is computed on its own:
  the soft EPM measured 5-6% faster on 2 CPU cores.
  """
  return x


def _own_gradient_fwd(x):
  return x, None


def _own_gradient_bwd(_, g):
  b = g.shape[0]
  rows = jnp.stack([g, jnp.zeros_like(g)], axis=1).reshape(b, 2, -1)
  weights = jnp.broadcast_to(jnp.asarray([1.0, 0.0], g.dtype), (b, 2))
  return (jnp.einsum("bk,bkp->bp", weights, rows).reshape(g.shape),)


_own_gradient.defvjp(_own_gradient_fwd, _own_gradient_bwd)


def _chunk_count(images: jax.Array, chunks: int | None) -> int:
  """How many equal chunks `perturb_soft` splits the batch into (1: the whole batch)."""
  batch = images.shape[0]
  if chunks is not None:
    if not isinstance(chunks, int) or chunks < 1 or batch % chunks:
      raise ValueError(f"chunks={chunks!r} does not divide the batch of {batch} into equal "
                       "parts; pass a divisor of the batch size, or None to pick by backend.")
    return chunks
  if jax.default_backend() != "cpu":
    return 1       # an accelerator runs the whole batch at once faster than in turns
  target = max(1, round(images.size * images.dtype.itemsize / SOFT_CHUNK_BYTES))
  divisors = [d for d in range(1, batch + 1) if batch % d == 0]
  return min(divisors, key=lambda d: (abs(d - target), d))


def perturb_soft(params: PolicyParams, images: jax.Array, key: jax.Array,
                 subpolicy: jax.Array, *,
                 call_op: Callable[..., jax.Array] = apply_drawn,
                 chunks: int | None = None) -> jax.Array:
  """Soft (differentiable) EPM; see the `eriep_jax.policy` package docstring.

  Inputs are not validated (`perturb` does that). `call_op(name, images,
  magnitude, drawn)` applies one candidate; only `bench/train.py` replaces it,
  to measure the cost of the mixing alone.

  Every random draw (the gates' noise, the signs, cutout's centres,
  sample_pairing's partners) is made for the whole batch. Each stage then runs
  in `chunks` equal parts of the batch, one after another (`lax.map`), each
  recomputed in the backward pass (`jax.checkpoint`), which keeps a chunk's
  17 candidate outputs in the CPU's caches. The result is the same function
  as with one chunk: the outputs are bit-identical, the gradients equal
  within float rounding (the chunks' sums run in another order). `chunks`
  None picks by backend (`_chunk_count`): 1 on accelerators, chunks of about
  `SOFT_CHUNK_BYTES` of images on the CPU.
  """
  values = constrain(params)
  batch = images.shape[0]
  num_chunks = _chunk_count(images, chunks)
  _, stage_keys = split_keys(key, params.num_stages)
  num_ops = len(params.ops)
  symmetric = np.array([ops_lib.get_op(n).symmetric for n in params.ops])

  # Stages 2..K are scan steps, so the N-op body is traced twice, not K times.
  def stage(x, xs):
    mu_k, sel_k, logit_k, keys = xs                    # (L, N) each, (3,) keys
    key_gate, key_sign, key_op = keys
    # Relaxed Bernoulli (binary Concrete): sigmoid((logit p + logistic) / T_b).
    noise = jax.random.logistic(key_gate, (batch, num_ops), jnp.float32)
    sign = jax.random.rademacher(key_sign, (batch, num_ops), jnp.float32)
    drawn = [draw_op(name, x, key_op) for name in params.ops]

    def mix(part):
      x, sub, noise, sign, drawn = part
      x = _own_gradient(x)
      mu, sel, logit_p = mu_k[sub], sel_k[sub], logit_k[sub]   # (b, N)
      gate = jax.nn.sigmoid((logit_p + noise) / params.bernoulli_temperature)
      mag = jnp.where(symmetric, sign * mu, mu)
      coef = sel * gate                                # (b, N)
      mixed = _mix(coef, *[call_op(name, x, mag[:, n], drawn[n])
                           for n, name in enumerate(params.ops)])
      return _bcast(1.0 - jnp.sum(coef, axis=1), x) * x + mixed

    part = (x, subpolicy, noise, sign, drawn)
    if num_chunks == 1:
      return mix(part), None
    split = lambda a: a.reshape((num_chunks, batch // num_chunks) + a.shape[1:])
    # Recomputed in the backward pass, except the ops' small statistics
    # (equalize's lookup table, auto_contrast's range, contrast's mean), which
    # cost more to recompute than to keep (`eriep_jax.ops._remat`).
    keep = jax.checkpoint_policies.save_only_these_names(ops_lib.STATISTIC)
    out = jax.lax.map(jax.checkpoint(mix, prevent_cse=False, policy=keep),
                      jax.tree.map(split, part))
    return out.reshape(x.shape), None

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
  """Applies a discrete policy with a given sub-policy per sample (every op on every image).

  The path for a forced `subpolicy` (`save_grid`'s rows); `_perturb_hard_shares`
  is the drawn one, and computes only the op each image drew.

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


def share_table(batch_size: int, num_subpolicies: int) -> tuple[np.ndarray, np.ndarray]:
  """The hard mode's static layout: which positions of the shuffled batch form each share.

  Share j holds positions floor(j B / L) to floor((j + 1) B / L) - 1, so the L
  shares differ in size by at most one. Rows are padded to the largest share.

  Returns:
    (positions, valid): (L, S) int positions in [0, B], B where padded, and
    the (L, S) bool mask of real ones; S = ceil(B / L).
  """
  bounds = (np.arange(num_subpolicies + 1) * batch_size) // num_subpolicies
  width = max(1, int(np.max(np.diff(bounds))))
  positions = bounds[:-1, None] + np.arange(width)[None, :]
  valid = positions < bounds[1:, None]
  return np.where(valid, positions, batch_size), valid


def _share_rows(key_sub: jax.Array, batch: int, num_subpolicies: int):
  """(rows, labels): image index of each share slot (B where padded), sub-policy of each share."""
  key_order, key_label = jax.random.split(key_sub)
  order = jax.random.permutation(key_order, batch)
  labels = jax.random.permutation(key_label, num_subpolicies)
  positions, valid = share_table(batch, num_subpolicies)
  rows = jnp.where(valid, order[np.minimum(positions, batch - 1)], batch)
  return rows, labels


def assign_subpolicies(key: jax.Array, batch_size: int, num_subpolicies: int) -> jax.Array:
  """Hard mode's sub-policy of each sample for `perturb(..., key, mode='hard')`.

  The batch is shuffled and cut into L shares whose sizes differ by at most
  one (`share_table`), and the shares take the L sub-policies in a random
  order. Each sample's sub-policy is therefore uniform on {0, ..., L-1}, as
  in soft mode (`sample_subpolicies`), but the draws are not independent:
  every sub-policy gets floor(B / L) or ceil(B / L) samples. Hard mode applies
  each share's ops to that share alone, so it computes one op per sample and
  stage instead of all N.

  Args:
    key: the key given to `perturb`.
    batch_size: B.
    num_subpolicies: L.

  Returns:
    int32 array of shape (B,).
  """
  rows, labels = _share_rows(split_keys(key, 1)[0], batch_size, num_subpolicies)
  owner = jnp.broadcast_to(labels[:, None], rows.shape).astype(jnp.int32)
  return jnp.zeros((batch_size,), jnp.int32).at[rows.reshape(-1)].set(
      owner.reshape(-1), mode="drop")


def _op_branch(name: str):
  if name == "sample_pairing":
    # Partners come from the whole batch, as when the op sees the whole batch.
    return lambda x, m, key, partners: ops_lib.sample_pairing_with(x, m, partners)
  return lambda x, m, key, partners: apply_op(name, x, m, key)


def _perturb_hard_shares(op_index: jax.Array, probability: jax.Array, magnitude: jax.Array,
                         images: jax.Array, key: jax.Array, *,
                         candidates: tuple[str, ...],
                         sequential: bool | None = None) -> jax.Array:
  """Applies a discrete policy, drawing the sub-policies from `key` (`assign_subpolicies`).

  Each stage gathers each share's images, applies the one op its sub-policy
  holds there (`lax.switch`, so only that op runs) with a hard Bernoulli(p)
  gate and a random sign per image, and scatters them back. On the CPU the
  shares run one after another (`lax.map`), so each computes only its op. On
  an accelerator, where 20 small sequential conditionals cost more than
  computing every op at once, they are vmapped (`vmap` of `lax.switch` runs
  every branch and selects): the same draws and the same function, faster
  there. Either way the ops are traced once per stage.

  Args, Returns: as `_perturb_hard`, without `subpolicy`; `sequential`
  forces `lax.map` (True) or `vmap` (False), None picks by backend.
  """
  if sequential is None:
    sequential = jax.default_backend() == "cpu"
  batch = images.shape[0]
  num_subpolicies, num_stages = op_index.shape
  key_sub, stage_keys = split_keys(key, num_stages)
  rows, labels = _share_rows(key_sub, batch, num_subpolicies)
  gather_rows = jnp.minimum(rows, batch - 1)           # padded slots compute, then drop
  width = rows.shape[1]
  symmetric = jnp.asarray([ops_lib.get_op(n).symmetric for n in candidates])
  branches = [_op_branch(n) for n in candidates]
  pairing = "sample_pairing" in candidates
  pairing_salt = _op_salt("sample_pairing")

  def stage(x, xs):
    index_k, prob_k, mag_k, keys = xs                  # (L,) each, (3,) keys
    key_gate, key_sign, key_op = keys
    applied = (jax.random.uniform(key_gate, rows.shape, jnp.float32)
               < prob_k[labels][:, None])              # (L, S)
    sign = jax.random.rademacher(key_sign, rows.shape, jnp.float32)
    partners = (x[jax.random.permutation(jax.random.fold_in(key_op, pairing_salt), batch)]
                if pairing else x)

    def share(j):
      sub, idx = labels[j], gather_rows[j]
      op, mu = index_k[sub], mag_k[sub]
      x_j = x[idx]
      m = jnp.where(symmetric[op], sign[j] * mu, jnp.broadcast_to(mu, (width,)))
      out = jax.lax.switch(op, branches, x_j, m, jax.random.fold_in(key_op, j), partners[idx])
      return jnp.where(_bcast(applied[j], x_j), out, x_j)

    shares = jnp.arange(num_subpolicies)
    out = jax.lax.map(share, shares) if sequential else jax.vmap(share)(shares)  # (L,S,H,W,C)
    return x.at[rows.reshape(-1)].set(out.reshape((-1,) + x.shape[1:]), mode="drop"), None

  xs = (op_index.T, probability.T, magnitude.T, stage_keys)
  return jax.lax.scan(stage, images, xs)[0]


def _hard(op_index, probability, magnitude, images, key, subpolicy, candidates):
  if subpolicy is None:
    return _perturb_hard_shares(op_index, probability, magnitude, images, key,
                                candidates=candidates)
  return _perturb_hard(op_index, probability, magnitude, images, key,
                       candidates=candidates, subpolicy=subpolicy)


@functools.partial(jax.jit, static_argnames=("mode", "chunks"))
def _perturb_params(params, images, key, subpolicy, *, mode, chunks=None):
  if mode == "soft":
    return perturb_soft(params, images, key, subpolicy, chunks=chunks)
  index, prob, mag = hard_tables(params)
  return _hard(index, prob, mag, images, key, subpolicy, params.ops)


@functools.partial(jax.jit, static_argnames=("candidates",))
def _perturb_policy(op_index, probability, magnitude, images, key, subpolicy, *, candidates):
  return _hard(op_index, probability, magnitude, images, key, subpolicy, candidates)


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
             subpolicy: jax.Array | None, chunks: int | None = None) -> jax.Array:
  """Runs the jitted core on validated inputs; `subpolicy` None draws it from `key`.

  Soft mode draws each sample's sub-policy independently (`sample_subpolicies`)
  and passes it in as data. Hard mode draws balanced shares inside its core
  (`assign_subpolicies`) unless a `subpolicy` is forced (`save_grid`'s rows).
  """
  hard = isinstance(params, Policy) or mode == "hard"
  if subpolicy is None and not hard:
    subpolicy = _draw(key, images.shape[0], params.num_subpolicies)
  if isinstance(params, Policy):
    candidates, index, prob, mag = params.hard_tables()
    return _perturb_policy(index, prob, mag, images, key, subpolicy, candidates=candidates)
  return _perturb_params(params, images, key, subpolicy, mode=mode, chunks=chunks)


def perturb(params: PolicyParams | Policy, images: jax.typing.ArrayLike, key: jax.Array, *,
            mode: str | None = None, chunks: int | None = None) -> jax.Array:
  """Applies the EPM, x_p = S(x_o; M, P, W) (Eq. 1).

  Each sample draws its sub-policy uniformly at random; see the
  `eriep_jax.policy` package docstring for the soft and hard stage equations.
  The function is pure and jit-able (`jax.jit(perturb, static_argnames=('mode',
  'chunks'))`), and can be called inside `jax.pmap`. The same key gives the
  same output, whatever `chunks` is (gradients equal within float rounding).

  Args:
    params: `PolicyParams` (soft or hard mode) or a discretised `Policy`
      (always applied as hard mode, with the same draws as
      `perturb(params, ..., mode='hard')` for the same key).
    images: float32 images in [0, 1], shape (B, H, W, C), the ops contract.
    key: a JAX PRNG key.
    mode: 'soft' (differentiable in M, P, W; training) or 'hard' (top-1 op
      per stage by W, hard Bernoulli gate; not meant for gradients). None
      means 'soft' for PolicyParams and 'hard' for a Policy.
    chunks: soft mode only: run each stage in this many equal parts of the
      batch, one after another, each recomputed in the backward pass
      (`perturb_soft`); it must divide the batch. None (the default) picks
      by backend: on the CPU chunks of about 32 images of 32x32 (the EPM
      alone 10-15% faster on 2 cores), on accelerators 1, the whole batch.

  Returns:
    The perturbed images, same shape and dtype as `images`.

  Raises:
    ValueError: for an unknown mode, images that break the ops contract
      (concrete images also outside [0, 1]; under jit the range is not
      inspected), mode='soft' with a Policy, inconsistent parameter shapes,
      or a `chunks` that does not divide the batch.
    TypeError: for a params or key of the wrong type.
  """
  mode = resolve_mode(params, mode)
  # Concrete images are also range-checked (0..255 floats are the commonest slip);
  # under jit the range is the documented contract.
  images = ops_lib.check_images(images, name="images", check_range=True)
  check_key(key)
  _chunk_count(images, chunks)   # rejects a chunk count that does not divide the batch
  return dispatch(params, images, key, mode, None, chunks)
