"""The stage-2 train state: N with its optimizer, the frozen reference R, the policy.

One pytree holds everything a step reads and writes (DESIGN.md, "Decisions"):

- N: ``params``, ``batch_stats``, ``opt_state``;
- R: ``ref_params`` and ``ref_batch_stats`` only, a separate pytree with no
  optimizer state (Algorithm 1 keeps R static between syncs);
- the EPM: ``policy_params`` and ``policy_opt_state`` ("Update EPM");
- ``step`` (completed updates) and ``key``, the run's base key (raw uint32
  key data, so that orbax stores it as a plain array).

Static pieces (the model, the optax transformations) are not in the state;
they are bound to the step with ``functools.partial``.
"""

import copy
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from eriep_jax import rng

__all__ = ["TrainState", "create_train_state", "make_optimizer", "make_policy_optimizer",
           "learning_rate_schedule", "num_train_steps"]


@flax.struct.dataclass
class TrainState:
  """Everything one stage-2 step updates. All fields are pytrees of arrays."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ref_params: Any
  ref_batch_stats: Any
  policy_params: Any
  policy_opt_state: Any
  key: jax.Array


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """``config.num_train_steps`` when > 0, else ``num_epochs * steps_per_epoch``."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return int(config.num_epochs * steps_per_epoch)


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           total_steps: int) -> Callable[[jax.Array], jax.Array]:
  """N's learning-rate schedule from ``config.optimizer``.

  ``constant``: ``learning_rate`` throughout. ``step``: multiplied by
  ``decay_factor`` at each fraction in ``decay_boundaries`` of ``total_steps``
  (the paper's "decreased by a factor of 10 at 60% and 80%", Section 4.2).

  Raises:
    ValueError: for an unknown schedule name.
  """
  opt = config.optimizer
  if opt.schedule == "constant":
    return optax.constant_schedule(opt.learning_rate)
  if opt.schedule == "step":
    boundaries = {int(round(f * total_steps)): opt.decay_factor for f in opt.decay_boundaries}
    return optax.piecewise_constant_schedule(opt.learning_rate, boundaries)
  raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; use 'constant' or 'step'.")


def make_optimizer(config: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformation:
  """N's optimizer ("Update N") from ``config.optimizer``.

  ``adam`` uses ``momentum`` as b1 and ``b2``; ``weight_decay > 0`` makes it
  AdamW (decoupled). In supcon's linear stage (``supcon.stage='linear'``) it
  updates the ``linear`` classifier only, at ``supcon.linear_learning_rate``
  when that is > 0. ``sgd`` is SGD with (heavy-ball) ``momentum`` and, when
  ``weight_decay > 0``, L2 weight decay added to the gradient.

  Raises:
    ValueError: for an unknown optimizer name.
  """
  opt = config.optimizer
  linear_stage = config.method == "supcon" and config.get("supcon", {}).get("stage") == "linear"
  if linear_stage and config.supcon.get("linear_learning_rate", -1.0) > 0:
    config = copy.deepcopy(config)
    config.optimizer.learning_rate = float(config.supcon.linear_learning_rate)
  lr = learning_rate_schedule(config, total_steps)
  if opt.name == "adam":
    if opt.weight_decay > 0:
      tx = optax.adamw(lr, b1=opt.momentum, b2=opt.b2, weight_decay=opt.weight_decay)
    else:
      tx = optax.adam(lr, b1=opt.momentum, b2=opt.b2)
  elif opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                     optax.sgd(lr, momentum=opt.momentum))
  else:
    raise ValueError(f"unknown optimizer.name {opt.name!r}; use 'adam' or 'sgd'.")
  if linear_stage:
    # SupContrast's linear stage: only the classifier learns; the encoder (and the
    # projection head) stay exactly as the contrastive stage left them.
    def labels(params):
      return {k: jax.tree.map(lambda _: "train" if k == "linear" else "frozen", v)
              for k, v in params.items()}
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx


def make_policy_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The EPM's optimizer in stage 2 ("Update EPM"): Adam on (M, P, W)."""
  p = config.policy
  return optax.adam(p.learning_rate, b1=p.b1, b2=p.b2)


def create_train_state(model: flax.linen.Module, policy_params: Any, key: jax.typing.ArrayLike,
                       *, image_shape: tuple[int, ...], tx: optax.GradientTransformation,
                       policy_tx: optax.GradientTransformation) -> TrainState:
  """Initialises N, copies it into R (Algorithm 1, line 2 and the sync at 0).

  Args:
    model: the classifier (N and R share the architecture).
    policy_params: the EPM's initial params (``init_policy`` or stage 1).
    key: the run's root key (``jax.random.key(config.seed)``), typed or raw
      uint32 data; it is stored raw in ``state.key``. N's weights come from
      its ``'init'`` purpose key (``eriep_jax.rng.purpose_key``).
    image_shape: (H, W, C) of one image.
    tx: N's optax transformation.
    policy_tx: the policy's optax transformation.

  Returns:
    A ``TrainState`` at step 0 with R = N.
  """
  key = jnp.asarray(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)

  params, batch_stats = _init_variables(model, tuple(image_shape), key)

  # One jit for the rest of the state (eager init compiles every small op on its own).
  @jax.jit
  def init(key, params, batch_stats, policy_params):
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        ref_params=params,
        ref_batch_stats=batch_stats,
        policy_params=policy_params,
        policy_opt_state=policy_tx.init(policy_params),
        key=key,
    )

  return init(key, params, batch_stats, policy_params)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_variables(model: flax.linen.Module, image_shape: tuple[int, ...], key: jax.Array):
  """N's initial (params, batch_stats) from the run's raw root key.

  Jitted once per model and image shape (modules compare by their fields), so
  runs of several methods in one process (the demo, a comparison) compile the
  model's init once (about 1.2 s of the demo's compiles on the 2-core box). The
  model must be hashable (flax modules whose fields are hashable are). N's weights
  are drawn with the 'rbg' PRNG (XLA's RngBitGenerator): deterministic per seed
  and backend, and ~5x faster to compile on CPU than threefry, which dominated
  the start-up of small runs.
  """
  init_key = jax.random.key_data(rng.purpose_key(key, "init"))
  words = jnp.concatenate([init_key, jax.random.fold_in(init_key, 0x1217)]).astype(jnp.uint32)
  init_key = jax.random.wrap_key_data(words, impl="rbg")
  variables = model.init(init_key, jnp.zeros((1,) + image_shape, jnp.float32), train=False)
  return variables["params"], variables.get("batch_stats", {})
