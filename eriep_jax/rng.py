"""Keys: one check for every public function, and one key per purpose of a run.

A run derives every key it uses from ``jax.random.key(config.seed)`` with a
named fold-in, one name per purpose, so that no two purposes can collide (a
step index can never equal a purpose's key, as ``fold_in(base, 2)`` once
equalled the step-2 key)::

  init   = purpose_key(seed, 'init')     # N's initial weights
  policy = purpose_key(seed, 'policy')   # the EPM's initial parameters
  steps  = purpose_key(seed, 'steps')    # step t uses fold_in(steps, t)
  eval   = purpose_key(eval_seed, 'eval')
  grid   = purpose_key(0, 'grid')        # the draws of a stage-2 run's final-policy grid
"""

from typing import Any
import zlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PURPOSES", "purpose_key", "check_key", "is_key"]

PURPOSES = ("init", "policy", "steps", "eval", "search", "grid")


def _salt(purpose: str) -> int:
  return zlib.crc32(purpose.encode()) & 0x7FFFFFFF


def purpose_key(seed_or_key: Any, purpose: str) -> jax.Array:
  """The typed key of one purpose of a run.

  Args:
    seed_or_key: an int seed or a typed/raw PRNG key (the run's root key).
    purpose: one of ``PURPOSES``.

  Returns:
    A typed key (``jax.random.key``), ``fold_in(root, crc32(purpose))``.

  Raises:
    ValueError: for an unknown purpose.
  """
  if purpose not in PURPOSES:
    raise ValueError(f"unknown key purpose {purpose!r}; use one of {PURPOSES}.")
  if isinstance(seed_or_key, (int, np.integer)):
    root = jax.random.key(int(seed_or_key))
  else:
    root = check_key(seed_or_key, "purpose_key")
    if not jnp.issubdtype(root.dtype, jax.dtypes.prng_key):
      root = jax.random.wrap_key_data(jnp.asarray(root, jnp.uint32))
  return jax.random.fold_in(root, _salt(purpose))


def is_key(key: Any) -> bool:
  """True for a typed key or a legacy raw uint32 key of shape (..., 2)."""
  dtype = getattr(key, "dtype", None)
  if dtype is None:
    return False
  return bool(jnp.issubdtype(dtype, jax.dtypes.prng_key) or
              (dtype == jnp.uint32 and np.shape(key)[-1:] == (2,)))


def check_key(key: Any, name: str, *, scalar: bool = False) -> Any:
  """Checks that ``name`` received a PRNG key; returns it unchanged.

  Args:
    key: a ``jax.random.key`` or a legacy uint32 key of shape (2,).
    name: the function's name, for the message.
    scalar: also refuse a batch of keys.

  Raises:
    ValueError: the key is None, or a batch of keys where one is needed.
    TypeError: the key is not a PRNG key.
  """
  if key is None:
    raise ValueError(f"{name} is random and needs a key; pass `key=jax.random.key(0)` "
                     "(or a key split from your step key).")
  if not is_key(key):
    raise TypeError(f"{name} got key={key!r:.80}, which is not a PRNG key; pass "
                    "`jax.random.key(seed)`.")
  if scalar:
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if (typed and key.shape != ()) or (not typed and key.shape != (2,)):
      raise ValueError(f"{name} got a key of shape {key.shape}; pass a single key, not a "
                       "batch of keys.")
  return key
