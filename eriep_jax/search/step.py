"""One stage-1 step: a WGAN-GP critic update, then a policy update (Eq. 3-4).

``SearchState`` holds what stage 1 trains; ``create_search_state`` builds it;
``search_step`` is the per-device step and ``make_search_step`` its pmapped
form over ``axis_name='batch'``.
"""

import functools
from typing import Any, Callable, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from eriep_jax import losses
from eriep_jax import policy as policy_lib
from eriep_jax.search import checks
from eriep_jax.search import critic as critic_lib
from eriep_jax.search import losses as search_losses

__all__ = ["SearchState", "create_search_state", "search_step", "make_search_step",
           "control_step", "make_control_step", "classifier_weight"]


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


def _adam(s: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(s.learning_rate, b1=s.b1, b2=s.b2)


def classifier_weight(config: ml_collections.ConfigDict) -> float:
  """The weight of f's cross-entropy in the critic step: ``search.classifier_weight``, or eps if < 0.

  Eq. (3) weights the classification loss l by eps in the policy's objective;
  the paper does not say how f itself is trained. Faster AutoAugment trains it
  in the critic step with the same weight (``classifier_weight=-1`` here).
  """
  w = config.search.get("classifier_weight", -1.0)
  return float(config.search.eps if w is None or w < 0 else w)


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def search_step(state: SearchState,
                batch: Mapping[str, jax.Array],
                key: jax.Array,
                *,
                critic_module: Any,
                critic_tx: optax.GradientTransformation,
                policy_tx: optax.GradientTransformation,
                eps: float,
                lambda_gp: float,
                classifier_weight: Optional[float] = None,
                gp_norm: str = "sample",
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
    eps: weight of the classification loss in the policy's objective (Eq. 3), >= 0.
    lambda_gp: weight of the gradient penalty, >= 0.
    classifier_weight: weight of f's cross-entropy on B' in the critic step,
      >= 0; None means eps (Faster AutoAugment's choice).
    gp_norm: 'sample' (WGAN-GP) or 'pixel' (Faster AutoAugment's per-pixel
      norm); see :func:`eriep_jax.search.losses.gradient_penalty`.
    train_policy: False cuts the policy's gradients (``stop_gradient``), a
      control run in which only the critic learns. May be a traced bool
      (e.g. a broadcast pmap argument), so that one compiled step serves
      both runs.
    axis_name: the pmap axis to average over; None outside pmap.

  Returns:
    ``(new_state, metrics)`` with scalars ``wasserstein`` (E D(B') - E D(A)),
    ``gp``, ``critic_loss``, ``policy_loss``, ``ce_real``, ``ce_fake``,
    ``acc_real`` and ``acc_fake`` (f's accuracy on B' before the critic's
    update and on A after it), ``epm_loss`` (Eq. 3 with Eq. 4) and
    ``entropy_stage{k}`` for each stage.

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

  cls_weight = eps if classifier_weight is None else classifier_weight
  # 1. Critic step: A is fixed (Faster AutoAugment draws it under no_grad).
  fake = jax.lax.stop_gradient(policy_lib.perturb(state.policy, x_a, key_aug_c, mode="soft"))
  stats = state.critic.get("batch_stats")

  def critic_objective(params):
    variables = {"params": params} if stats is None else {"params": params, "batch_stats": stats}
    both = jnp.concatenate([x_b, fake], axis=0)
    logits, scores, new_stats = critic_lib.critic_apply(critic_module, variables, both, train=True)

    def score_fn(x):
      return critic_lib.critic_apply(critic_module, variables, x, train=False)[1]

    gp = search_losses.gradient_penalty(score_fn, x_b, fake, key_gp, norm=gp_norm)
    loss, aux = search_losses.critic_loss(scores[:half], scores[half:], gp, logits[:half], y_b,
                                   lambda_gp=lambda_gp, eps=cls_weight)
    aux["acc_real"] = _accuracy(logits[:half], y_b)
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
    logits_a, scores_a, _ = critic_lib.critic_apply(critic_module, critic_vars, augmented, train=False)
    loss, aux = search_losses.policy_loss(scores_a, logits_a, y_a, eps=eps)
    aux["acc_fake"] = _accuracy(logits_a, y_a)
    return loss, aux

  (p_loss, p_aux), p_grads = jax.value_and_grad(policy_objective, has_aux=True)(state.policy)
  p_grads = mean(p_grads)
  p_updates, policy_opt_state = policy_tx.update(p_grads, state.policy_opt_state, state.policy)
  # A 'projected' policy's mu and p go back into [0, 1]; a 'sigmoid' one is unchanged.
  new_policy = policy_lib.project(optax.apply_updates(state.policy, p_updates))

  metrics = {
      "wasserstein": c_aux["wasserstein"],
      "gp": c_aux["gp"],
      "critic_loss": c_loss,
      "policy_loss": p_loss,
      "ce_real": c_aux["ce_real"],
      "ce_fake": p_aux["ce_fake"],
      "acc_real": c_aux["acc_real"],
      "acc_fake": p_aux["acc_fake"],
      "epm_loss": c_aux["wasserstein"] + eps * (c_aux["ce_real"] + p_aux["ce_fake"]),
  }
  for k, h in enumerate(policy_lib.selection_entropy(new_policy)):
    metrics[f"entropy_stage{k}"] = h
  new_state = state.replace(step=state.step + 1, policy=new_policy, critic=critic_vars,
                            policy_opt_state=policy_opt_state, critic_opt_state=critic_opt_state)
  return new_state, mean(metrics)


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
  critic_module = critic_lib.build_critic(config, num_classes, **model_options)
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
  checks.check_search_config(config, num_devices=1)
  tx = _adam(config.search)
  step = functools.partial(search_step, critic_module=critic_module, critic_tx=tx, policy_tx=tx,
                           eps=float(config.search.eps), lambda_gp=float(config.search.lambda_gp),
                           classifier_weight=classifier_weight(config),
                           gp_norm=config.search.get("gp_norm", "sample"),
                           train_policy=train_policy, axis_name="batch")
  return jax.pmap(step, axis_name="batch", in_axes=(0, 0, None), donate_argnums=(0,))


def control_step(state: SearchState,
                 batch: Mapping[str, jax.Array],
                 *,
                 critic_module: Any,
                 critic_tx: optax.GradientTransformation,
                 axis_name: Optional[str] = "batch") -> tuple[SearchState, dict[str, jax.Array]]:
  """One step of the classifier control: f trained on B' by cross-entropy alone.

  The same backbone, batches, half (B') and optimizer as the search's critic
  step, without the critic's terms (no Wasserstein estimate, no gradient
  penalty) and without the policy. Its held-out accuracy is the ceiling that
  the search's classifier is compared with. Adam is nearly invariant to the
  loss's scale, so the weight of the cross-entropy does not matter here.

  Returns:
    ``(new_state, metrics)`` with ``ce_real`` and ``acc_real`` on B'.
  """
  images, labels = batch["image"], batch["label"]
  half = images.shape[0] // 2
  x_b, y_b = images[half:], labels[half:]
  stats = state.critic.get("batch_stats")

  def objective(params):
    variables = {"params": params} if stats is None else {"params": params, "batch_stats": stats}
    logits, _, new_stats = critic_lib.critic_apply(critic_module, variables, x_b, train=True)
    ce = jnp.mean(losses.cross_entropy(logits, y_b))
    return ce, (_accuracy(logits, y_b), new_stats)

  (ce, (acc, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
      state.critic["params"])
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
  updates, opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic["params"])
  critic_vars = dict(state.critic)
  critic_vars["params"] = optax.apply_updates(state.critic["params"], updates)
  metrics = {"ce_real": ce, "acc_real": acc}
  if new_stats is not None:
    critic_vars["batch_stats"] = new_stats
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
    if new_stats is not None:
      critic_vars["batch_stats"] = jax.lax.pmean(new_stats, axis_name)
  return state.replace(step=state.step + 1, critic=critic_vars,
                       critic_opt_state=opt_state), metrics


def make_control_step(config: ml_collections.ConfigDict, critic_module: Any) -> Callable:
  """The pmapped ``control_step(state, batch) -> (state, metrics)`` with the search's Adam."""
  step = functools.partial(control_step, critic_module=critic_module,
                           critic_tx=_adam(config.search), axis_name="batch")
  return jax.pmap(step, axis_name="batch", donate_argnums=(0,))
