"""Stage 1 of Algorithm 1 ("OPTIMIZE EPM"): the WGAN-GP policy search, Eq. (3)-(4).

The EPM policy (M, P, W) is trained alone, after Faster AutoAugment (Hataya et
al., 2020), so that its perturbed images A stay close in distribution to clean
images B' and stay classifiable:

  L_EPM = d_theta(A, B') + eps * l                                   (Eq. 3)
  l = E_A CE(f(x), y) + E_B' CE(f(x'), y')                           (Eq. 4)

d_theta is the Wasserstein-1 estimate of a WGAN-GP critic D; D and the
classifier f share one registry backbone (:class:`SearchCritic`). Each step
splits every device's batch in halves: the first half is perturbed into A,
the second is B'. Then, in the order of the reference implementation:

1. critic step (A held fixed by ``stop_gradient``):
   minimise -(E D(B') - E D(A)) + lambda_gp * GP + eps * CE(f(B'));
2. policy step (critic fixed, at its updated parameters): minimise
   -E D(A) + eps * CE(f(A)) with A = perturb(policy, x, mode='soft'), so
   gradients reach M, P and W. A is drawn afresh (new sub-policy choices and
   gates for the same images), as the reference implementation calls the
   policy a second time.

The logged ``wasserstein`` is the critic's estimate E D(B') - E D(A) before its
update, and ``epm_loss`` is Eq. (3) with Eq. (4) from the two steps' terms.

Both players use Adam (lr 1e-3, betas (0, 0.999) by default). The step is
``jax.pmap``-ed over local devices with ``axis_name='batch'``; gradients and
metrics are ``pmean``-ed. Usage::

  policy = run_search(config, workdir)          # writes checkpoint, JSON, table, PNG
  policy = resolve_policy(config, workdir, key) # config.policy.source: init|search|<path>

The critic's backbone runs without batch norm by default
(``config.search.batch_norm = False``): the per-example gradient penalty
assumes each critic score depends on its own image only, which batch
statistics break (Gulrajani et al., 2017, Sec. 4). Faster AutoAugment's code
keeps the WideResNet's batch norm; ``batch_norm=True`` is offered for that
variant (the statistics are then per-device batch statistics, updated in the
critic step).
"""

import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from eriep_jax import losses
from eriep_jax import ops as ops_lib
from eriep_jax import parallel
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax.train import writers

__all__ = [
    "SearchState", "create_search_state", "make_search_step", "search_step", "run_search",
    "resolve_policy", "load_policy", "save_policy", "params_from_policy",
    "check_search_config",
]

CHECKPOINT_DIR = "policy_checkpoint"
POLICY_JSON = "policy.json"
SUMMARY_TXT = "policy_summary.txt"
PARAMS_JSON = "policy_params.json"
SEARCH_LOG = "search_log.json"
GRID_PNG = "policy_grid.png"


@flax.struct.dataclass
class SearchState:
  """Everything stage 1 trains: the policy, the critic and both optimizer states.

  Attributes:
    step: number of completed search steps, an int32 scalar.
    policy: the EPM's :class:`~eriep_jax.policy.PolicyParams`.
    critic: the critic's variables ``{'params': ...}`` (plus ``batch_stats``
      with ``search.batch_norm``).
    policy_opt_state: Adam state of the policy.
    critic_opt_state: Adam state of the critic's params.
  """
  step: jax.Array
  policy: Any
  critic: Any
  policy_opt_state: optax.OptState
  critic_opt_state: optax.OptState


def check_search_config(config: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Checks ``config.search`` before any compute.

  Args:
    config: the experiment config (with a ``search`` block).
    num_devices: number of local devices the batch is split over.

  Raises:
    ValueError: naming the bad value and the fix.
  """
  s = config.search
  if not s.eps >= 0:
    raise ValueError(f"config.search.eps must be >= 0, got {s.eps}; it weights the "
                     "classification loss in Eq. (3) (Faster AutoAugment uses 0.1).")
  if not s.lambda_gp >= 0:
    raise ValueError(f"config.search.lambda_gp must be >= 0, got {s.lambda_gp}; it weights "
                     "the gradient penalty (WGAN-GP uses 10).")
  if not s.learning_rate > 0:
    raise ValueError(f"config.search.learning_rate must be > 0, got {s.learning_rate}; "
                     "try 1e-3.")
  for name in ("b1", "b2"):
    value = s[name]
    if not 0 <= value < 1:
      raise ValueError(f"config.search.{name} must be in [0, 1), got {value}; Faster "
                       "AutoAugment uses betas (0, 0.999).")
  if not (isinstance(s.batch_size, int) and s.batch_size > 0
          and s.batch_size % (2 * num_devices) == 0):
    raise ValueError(f"config.search.batch_size {s.batch_size} must be a positive multiple of "
                     f"2 x {num_devices} devices = {2 * num_devices}, so that every device "
                     f"splits its share in halves; use e.g. {2 * num_devices * 64}.")
  if not (isinstance(s.num_examples, int) and s.num_examples >= s.batch_size):
    raise ValueError(f"config.search.num_examples must be an int >= search.batch_size "
                     f"({s.batch_size}), got {s.num_examples}; use 4000 for CIFAR-10.")
  if not (isinstance(s.num_epochs, (int, float)) and s.num_epochs > 0):
    raise ValueError(f"config.search.num_epochs must be > 0, got {s.num_epochs}; try 20.")
  if not (isinstance(s.critic_hidden, int) and s.critic_hidden > 0):
    raise ValueError(f"config.search.critic_hidden must be a positive int, got "
                     f"{s.critic_hidden}; try 128.")
  if s.get("num_steps", -1) == 0 or s.get("num_steps", -1) < -1:
    raise ValueError(f"config.search.num_steps must be -1 (use num_epochs) or > 0, got "
                     f"{s.num_steps}.")


def _adam(s: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(s.learning_rate, b1=s.b1, b2=s.b2)


def _critic_apply(critic_module, variables, images, *, train: bool):
  """Returns (logits, scores, new_batch_stats_or_None)."""
  if train and "batch_stats" in variables:
    (logits, scores), updates = critic_module.apply(variables, images, train=True,
                                                    mutable=["batch_stats"])
    return logits, scores, updates["batch_stats"]
  logits, scores = critic_module.apply(variables, images, train=False)
  return logits, scores, None


def search_step(state: SearchState,
                batch: Mapping[str, jax.Array],
                key: jax.Array,
                *,
                critic_module: Any,
                critic_tx: optax.GradientTransformation,
                policy_tx: optax.GradientTransformation,
                eps: float,
                lambda_gp: float,
                train_policy: bool = True,
                axis_name: Optional[str] = "batch") -> tuple[SearchState, dict[str, jax.Array]]:
  """One stage-1 step on one device's batch: a critic update, then a policy update.

  Bind the keyword options with ``functools.partial`` and ``jax.pmap`` the
  result with ``axis_name='batch'`` (see :func:`make_search_step`).

  Args:
    state: the :class:`SearchState`.
    batch: ``{'image': (B, H, W, C) float32 in [0, 1], 'label': (B,) int}``;
      the first B/2 images are perturbed into A, the last B/2 are B'.
    key: PRNG key of the run; the step folds in ``state.step`` and the
      device index.
    critic_module: a :class:`~eriep_jax.models.critic.SearchCritic`.
    critic_tx: optimizer of the critic.
    policy_tx: optimizer of the policy.
    eps: weight of the classification loss (Eq. 3), >= 0.
    lambda_gp: weight of the gradient penalty, >= 0.
    train_policy: False cuts the policy's gradients (``stop_gradient``), a
      control run in which only the critic learns. May be a traced bool
      (e.g. a broadcast pmap argument), so that one compiled step serves
      both runs.
    axis_name: the pmap axis to average over; None outside pmap.

  Returns:
    ``(new_state, metrics)`` with scalars ``wasserstein`` (E D(B') - E D(A)),
    ``gp``, ``critic_loss``, ``policy_loss``, ``ce_real``, ``ce_fake``,
    ``epm_loss`` (Eq. 3 with Eq. 4) and ``entropy_stage{k}`` for each stage.

  Raises:
    ValueError: for an odd per-device batch or mismatched labels.
  """
  images = batch["image"]
  labels = batch["label"]
  if images.ndim != 4 or images.shape[0] % 2:
    raise ValueError(f"each device's batch must have shape (B, H, W, C) with an even B, got "
                     f"{images.shape}; use a search.batch_size divisible by 2 x devices.")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels {labels.shape} must have shape ({images.shape[0]},) to match "
                     f"images {images.shape}.")
  half = images.shape[0] // 2
  x_a, y_a = images[:half], labels[:half]
  x_b, y_b = images[half:], labels[half:]

  key = jax.random.fold_in(key, state.step)
  if axis_name is not None:
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
  key_aug_c, key_gp, key_aug_p = jax.random.split(key, 3)

  def mean(tree):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

  # 1. Critic step: A is fixed (Faster AutoAugment draws it under no_grad).
  fake = jax.lax.stop_gradient(policy_lib.perturb(state.policy, x_a, key_aug_c, mode="soft"))
  stats = state.critic.get("batch_stats")

  def critic_objective(params):
    variables = {"params": params} if stats is None else {"params": params, "batch_stats": stats}
    both = jnp.concatenate([x_b, fake], axis=0)
    logits, scores, new_stats = _critic_apply(critic_module, variables, both, train=True)

    def score_fn(x):
      return _critic_apply(critic_module, variables, x, train=False)[1]

    gp = losses.gradient_penalty(score_fn, x_b, fake, key_gp)
    loss, aux = losses.critic_loss(scores[:half], scores[half:], gp, logits[:half], y_b,
                                   lambda_gp=lambda_gp, eps=eps)
    return loss, (aux, new_stats)

  (c_loss, (c_aux, new_stats)), c_grads = jax.value_and_grad(
      critic_objective, has_aux=True)(state.critic["params"])
  c_grads = mean(c_grads)
  c_updates, critic_opt_state = critic_tx.update(c_grads, state.critic_opt_state,
                                                 state.critic["params"])
  critic_vars = dict(state.critic)
  critic_vars["params"] = optax.apply_updates(state.critic["params"], c_updates)
  if new_stats is not None:
    critic_vars["batch_stats"] = mean(new_stats)

  # 2. Policy step: the critic is fixed at its new parameters.
  def policy_objective(policy):
    if train_policy is not True:
      policy = jax.tree.map(
          lambda p: jnp.where(train_policy, p, jax.lax.stop_gradient(p)), policy)
    augmented = policy_lib.perturb(policy, x_a, key_aug_p, mode="soft")
    logits_a, scores_a, _ = _critic_apply(critic_module, critic_vars, augmented, train=False)
    return losses.policy_loss(scores_a, logits_a, y_a, eps=eps)

  (p_loss, p_aux), p_grads = jax.value_and_grad(policy_objective, has_aux=True)(state.policy)
  p_grads = mean(p_grads)
  p_updates, policy_opt_state = policy_tx.update(p_grads, state.policy_opt_state, state.policy)
  new_policy = optax.apply_updates(state.policy, p_updates)

  metrics = {
      "wasserstein": c_aux["wasserstein"],
      "gp": c_aux["gp"],
      "critic_loss": c_loss,
      "policy_loss": p_loss,
      "ce_real": c_aux["ce_real"],
      "ce_fake": p_aux["ce_fake"],
      "epm_loss": c_aux["wasserstein"] + eps * (c_aux["ce_real"] + p_aux["ce_fake"]),
  }
  for k, h in enumerate(policy_lib.selection_entropy(new_policy)):
    metrics[f"entropy_stage{k}"] = h
  new_state = state.replace(step=state.step + 1, policy=new_policy, critic=critic_vars,
                            policy_opt_state=policy_opt_state, critic_opt_state=critic_opt_state)
  return new_state, mean(metrics)


def _model_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``config.model`` options the critic's backbone shares with N (normalisation, dtype)."""
  options = {k: v for k, v in config.model.items() if k not in ("name", "width", "batch_norm")}
  for k in ("mean", "std"):
    if isinstance(options.get(k), list):
      options[k] = tuple(options[k])
  return options


def _critic_module(config: ml_collections.ConfigDict, num_classes: int, **model_options):
  from eriep_jax import models  # pylint: disable=g-import-not-at-top
  from eriep_jax.models.critic import SearchCritic  # pylint: disable=g-import-not-at-top
  s = config.search
  backbone = models.get_model(s.backbone, num_classes, width=s.width,
                              batch_norm=s.get("batch_norm", False), **model_options)
  return SearchCritic(backbone=backbone, num_classes=num_classes, hidden=s.critic_hidden)


def create_search_state(config: ml_collections.ConfigDict,
                        key: jax.Array,
                        image_shape: tuple[int, int, int],
                        num_classes: int,
                        **model_options) -> tuple[SearchState, Any]:
  """Initialises the policy, the critic and both Adam states (not replicated).

  Args:
    config: the experiment config (``policy`` and ``search`` blocks).
    key: PRNG key.
    image_shape: (H, W, C) of the images.
    num_classes: number of classes of the classifier head.
    **model_options: extra options for ``get_model`` (e.g. ``normalize``,
      ``mean``, ``std``, ``dtype``; :func:`run_search` passes ``config.model``'s).

  Returns:
    ``(state, critic_module)``.
  """
  key_policy, key_critic = jax.random.split(key)
  policy = policy_lib.init_policy(key_policy, config.policy)
  critic_module = _critic_module(config, num_classes, **model_options)
  tx = _adam(config.search)

  # One jitted init: eager initialisation dispatches (and compiles) every
  # small op separately, which costs tens of seconds on a busy CPU.
  @jax.jit
  def init(key_critic, policy):
    variables = critic_module.init(key_critic, jnp.zeros((2,) + tuple(image_shape), jnp.float32),
                                   train=False)
    variables = dict(flax.core.unfreeze(variables))
    return SearchState(step=jnp.zeros((), jnp.int32), policy=policy, critic=variables,
                       policy_opt_state=tx.init(policy),
                       critic_opt_state=tx.init(variables["params"]))

  # The critic is initialised from an RBG key derived from `key`: XLA compiles
  # RngBitGenerator about 4x faster than threefry on CPU (the init's compile
  # time dominates short runs); the initial weights have the same distribution.
  seed = jax.random.bits(key_critic, (), jnp.uint32)
  state = init(jax.random.key(seed, impl="rbg"), policy)
  return state, critic_module


def make_search_step(config: ml_collections.ConfigDict, critic_module: Any, *,
                     train_policy: bool = True) -> Callable:
  """The pmapped ``search_step(state, batch, key) -> (state, metrics)``.

  Args:
    config: the experiment config; ``search.eps``, ``search.lambda_gp`` and
      the Adam settings are bound here.
    critic_module: the critic returned by :func:`create_search_state`.
    train_policy: False cuts the policy's gradients (control runs).

  Returns:
    A function of a replicated state (``eriep_jax.parallel.replicate``), a
    batch of shape (devices, B, ...) and one key (broadcast to every device);
    ``axis_name='batch'``; the state is donated.
  """
  check_search_config(config, num_devices=1)
  tx = _adam(config.search)
  step = functools.partial(search_step, critic_module=critic_module, critic_tx=tx, policy_tx=tx,
                           eps=float(config.search.eps), lambda_gp=float(config.search.lambda_gp),
                           train_policy=train_policy, axis_name="batch")
  return jax.pmap(step, axis_name="batch", in_axes=(0, 0, None), donate_argnums=(0,))


def _num_steps(config: ml_collections.ConfigDict, num_train: Optional[int]) -> tuple[int, int]:
  """(total steps, examples per epoch) of the search."""
  s = config.search
  examples = s.num_examples if num_train is None else min(s.num_examples, num_train)
  if examples < s.batch_size:
    raise ValueError(f"config.search.batch_size {s.batch_size} is larger than the {examples} "
                     "training examples available to the search; use a smaller batch size.")
  steps_per_epoch = examples // s.batch_size
  if s.get("num_steps", -1) > 0:
    return int(s.num_steps), examples
  return max(1, int(round(s.num_epochs * steps_per_epoch))), examples


def _progress_line(step: int, total: int, metrics: Mapping[str, float], rate: float) -> str:
  parts = [f"search {step}/{total}", f"W {metrics['wasserstein']:+.4f}",
           f"GP {metrics['gp']:.4f}", f"L_critic {metrics['critic_loss']:+.4f}",
           f"L_policy {metrics['policy_loss']:+.4f}"]
  parts += [f"H{k[len('entropy_stage'):]} {v:.3f}" for k, v in metrics.items()
            if k.startswith("entropy_stage")]
  parts.append(f"{rate:.1f} img/s")
  return " | ".join(parts)


def save_policy(params: Any, workdir: os.PathLike, *, images: Optional[np.ndarray] = None,
                key: Optional[jax.Array] = None) -> dict[str, pathlib.Path]:
  """Writes the searched policy: orbax checkpoint, JSON, summary table and PNG grid.

  Args:
    params: the :class:`~eriep_jax.policy.PolicyParams` (on the host).
    workdir: output folder (created).
    images: a few clean images (B, H, W, C) for the PNG grid; no grid if None.
    key: PRNG key for the grid's perturbations.

  Returns:
    A dict of the written paths: ``checkpoint``, ``json``, ``summary``, ``grid``.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
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
  if images is not None:
    paths["grid"] = workdir / GRID_PNG
    policy_lib.save_grid(params, images, paths["grid"],
                         jax.random.key(0) if key is None else key)
  return paths


def run_search(config: ml_collections.ConfigDict, workdir: os.PathLike) -> Any:
  """Runs stage 1 (Algorithm 1, "OPTIMIZE EPM") and writes its results.

  Trains the policy against the WGAN-GP critic for ``search.num_epochs``
  epochs over ``search.num_examples`` training images (``search.num_steps >
  0`` overrides), pmapped over the local devices. Logs the Wasserstein
  estimate, the gradient penalty, both losses and each stage's op-weight
  entropy every ``search.log_every_steps`` steps, with a progress line.

  Writes to ``workdir``: ``policy_checkpoint/`` (orbax), ``policy_params.json``
  (the raw parameters, exact and small enough to commit), ``policy.json``
  (the discretised :class:`~eriep_jax.policy.Policy`), ``policy_summary.txt``
  (also printed), ``policy_grid.png`` and ``search_log.json`` (the logged
  metrics and the wall time). The search uses ``config.search.seed`` (not the
  run's ``config.seed``), so one searched policy serves every seed of a sweep.

  Args:
    config: the experiment config.
    workdir: output folder (created).

  Returns:
    The searched :class:`~eriep_jax.policy.PolicyParams`, on the host.

  Raises:
    ValueError: for bad ``config.search`` values (before any compute).
  """
  from eriep_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  num_devices = jax.local_device_count()
  check_search_config(config, num_devices=num_devices)
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  s = config.search

  info = data_lib.get_dataset_info(config)
  total_steps, examples = _num_steps(config, info.num_train)

  seed = int(s.get("seed", 0))
  key = rng.purpose_key(seed, "search")
  key_init, key_steps, key_grid = jax.random.split(key, 3)
  state, critic_module = create_search_state(config, key_init, tuple(info.image_shape),
                                             info.num_classes, **_model_options(config))
  step_fn = make_search_step(config, critic_module,
                             train_policy=s.get("train_policy", True))
  state = parallel.replicate(state)

  batches = data_lib.train_iterator(config, seed=seed, num_examples=examples,
                                    batch_size=s.batch_size)
  writer = writers.create_writer(str(workdir), just_logging=jax.process_index() > 0)
  log_every = max(1, int(s.get("log_every_steps", config.get("log_every_steps", 50))))
  grid_images = None
  logging.info("stage-1 search: %d steps of %d images on %d devices, %d examples",
               total_steps, s.batch_size, num_devices, examples)
  start = last = time.perf_counter()
  last_step = 0
  log = []
  for step in range(1, total_steps + 1):
    batch = next(batches)
    if grid_images is None:
      grid_images = np.asarray(jax.device_get(batch["image"]))[0][:8]
    state, metrics = step_fn(state, {"image": batch["image"], "label": batch["label"]},
                             key_steps)
    if step % log_every == 0 or step == total_steps:
      metrics = {k: float(v) for k, v in parallel.unreplicate(metrics).items()}
      now = time.perf_counter()
      rate = (step - last_step) * s.batch_size / max(now - last, 1e-9)
      metrics["images_per_sec"] = rate
      writer.write_scalars(step, metrics)
      log.append(dict(step=step, **metrics))
      if config.get("progress", True):
        print(_progress_line(step, total_steps, metrics, rate), flush=True)
      last, last_step = now, step
  writer.flush()
  wall = time.perf_counter() - start
  logging.info("stage-1 search done in %.1f s", wall)
  params = parallel.unreplicate(state.policy)
  # The log is written before the policy: a policy file marks a finished search.
  (workdir / SEARCH_LOG).write_text(json.dumps(
      {"num_steps": total_steps, "num_examples": examples, "batch_size": s.batch_size,
       "seed": seed, "wall_time_s": wall, "log": log}, indent=1), encoding="utf-8")
  save_policy(params, workdir, images=grid_images, key=key_grid)
  return params


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
  }


def _policy_from_tree(tree: Mapping[str, Any]) -> Any:
  all_ops = tuple(ops_lib.OPS)
  return policy_lib.PolicyParams(
      magnitude=jnp.asarray(tree["magnitude"], jnp.float32),
      probability=jnp.asarray(tree["probability"], jnp.float32),
      weight=jnp.asarray(tree["weight"], jnp.float32),
      ops=tuple(all_ops[int(i)] for i in np.asarray(tree["op_index"]).reshape(-1)),
      selection_temperature=float(tree["selection_temperature"]),
      bernoulli_temperature=float(tree["bernoulli_temperature"]))


def params_from_policy(policy: Any, config: Any = None) -> Any:
  """Embeds a discretised Policy (e.g. read from JSON) in raw PolicyParams.

  Each stage's chosen op gets W = 1 and every other op W = 0, so that the
  selection softmax(W / T_sel) puts weight 1 / (1 + (N - 1) e^{-1/T_sel}) on it
  (> 0.99999 at T_sel = 0.05 with 17 ops): soft mode is then the discrete
  policy up to that rounding, and ``discretize`` gives the same Policy back.
  The chosen op's probability and magnitude are stored as logits of p and mu;
  the other ops keep ``init_probability`` / ``init_magnitude``.

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

  def logit(p):
    p = float(np.clip(p, 0.0, 1.0))
    return -np.inf if p == 0 else (np.inf if p == 1 else np.log(p) - np.log1p(-p))

  weight = np.zeros(shape, np.float32)
  prob = np.full(shape, logit(cfg.init_probability), np.float32)
  mag = np.full(shape, logit(cfg.init_magnitude), np.float32)
  for l, sub in enumerate(policy.subpolicies):
    for k, op in enumerate(sub):
      n = cfg.ops.index(op.op)
      weight[l, k, n] = 1.0
      prob[l, k, n] = logit(op.probability)
      mag[l, k, n] = logit(op.magnitude)
  return policy_lib.PolicyParams(
      magnitude=jnp.asarray(mag), probability=jnp.asarray(prob), weight=jnp.asarray(weight),
      ops=cfg.ops, selection_temperature=cfg.selection_temperature,
      bernoulli_temperature=cfg.bernoulli_temperature)


def load_policy(path: os.PathLike, config: Optional[ml_collections.ConfigDict] = None) -> Any:
  """Loads a searched policy: a policy checkpoint dir, a search workdir or a JSON file.

  A checkpoint or a ``policy_params.json`` restores the raw parameters exactly
  (ops and temperatures included); a search workdir is read in that order. A JSON :class:`~eriep_jax.policy.Policy` holds only the
  discretised policy; it is embedded with :func:`params_from_policy`.

  Args:
    path: an orbax ``policy_checkpoint`` dir, a search workdir holding one
      (or a ``policy.json``), or a ``policy.json`` file.
    config: the experiment config; its ``policy`` block is used for JSON.

  Returns:
    :class:`~eriep_jax.policy.PolicyParams`.

  Raises:
    ValueError: naming the path, if it is missing or cannot be read as a policy.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise ValueError(f"policy path {str(path)!r} does not exist; point config.policy.source "
                     "at a policy.json or a policy_checkpoint dir written by --mode=search.")
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
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    with ocp.StandardCheckpointer() as ckpt:
      return _policy_from_tree(ckpt.restore(path.absolute()))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"policy path {str(path)!r} could not be read as a searched policy "
                     f"({type(e).__name__}: {e}); pass a policy.json or a policy_checkpoint "
                     "dir written by --mode=search.") from e


def _is_checkpoint(path: pathlib.Path) -> bool:
  return path.is_dir() and any((path / n).exists() for n in ("_CHECKPOINT_METADATA",
                                                               "_METADATA", "manifest.ocdbt"))


def resolve_policy(config: ml_collections.ConfigDict, workdir: os.PathLike,
                   key: jax.Array) -> Any:
  """The policy stage 2 starts from, per ``config.policy.source``.

  Args:
    config: the experiment config.
    workdir: the run's workdir; ``'search'`` searches into ``workdir/search``.
    key: PRNG key for ``'init'``.

  Returns:
    :class:`~eriep_jax.policy.PolicyParams`: ``'init'`` -> ``init_policy``;
    ``'search'`` -> :func:`run_search` first; ``'random'`` -> the discrete
    ``random_policy(config.policy.seed)`` embedded with
    :func:`params_from_policy`; any other string -> the policy loaded from
    that path (:func:`load_policy`).

  Raises:
    ValueError: for an empty source, or a missing/corrupt path (naming it).
  """
  source = config.policy.source
  if not isinstance(source, str) or not source:
    raise ValueError(f"config.policy.source must be 'init', 'search', 'random' or a path, got "
                     f"{source!r}.")
  if source == "init":
    return policy_lib.init_policy(key, config.policy)
  if source == "search":
    return run_search(config, pathlib.Path(workdir) / "search")
  if source == "random":
    return params_from_policy(policy_lib.random_policy(int(config.policy.get("seed", 0)),
                                                       config.policy), config.policy)
  return load_policy(source, config)
