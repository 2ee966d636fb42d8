"""The stage-2 train step, Algorithm 1 "TRAIN NETWORK", Eq. (5)-(9).

``train_step(state, batch, key) -> (state, metrics)`` once the static
settings are bound with ``functools.partial`` (``make_train_step`` does it);
the loop runs it under ``jax.pmap(axis_name='batch')``.

Methods (``config.method`` / ``config.reference``):

- ``eriep`` + ``reference='frozen'`` (default, as written): x_p = EPM(x_o)
  (soft), L_N = CE(N(x_o)), L_R = CE(R(x_p)) with R in inference mode and
  its params constant, L_final = L_N + alpha |L_N - L_R|; N and the EPM are
  updated from L_final; R <- N every ``sync_freq`` steps.
- ``eriep`` + ``reference='live'``: R is N's current params (and running batch
  stats), so gradients reach N through x_p as well.
- ``standard``: plain cross-entropy on x_o; the policy is untouched.
- ``augment``: cross-entropy of N on x_p from the hard (sampled) policy; the
  policy is untouched. The "just augment" baseline.
- ``supcon`` (Table 4; Khosla et al., 2020), two stages (``supcon_stage``):
  ``'encoder'``: the SupCon loss on the L2-normalised projections of two
  views per image (SupContrast's crop/flip/jitter/grayscale, or two hard EPM
  draws with ``supcon_views='epm'``), the negatives gathered over all devices;
  ``'linear'``: cross-entropy of the linear classifier on the frozen encoder's
  pooled features (encoder in inference mode, as SupContrast's linear stage).
- ``unicl`` (Table 4; Yang et al., 2022): the bidirectional image-label
  contrastive loss between the image embeddings and the learnable class
  embeddings of their labels, one per image, every same-label pair positive.
- ``jsd`` (AugMix's consistency, Hendrycks et al., 2020): CE on x_o plus
  ``jsd_weight`` times the Jensen-Shannon divergence of N's predictions on x_o
  and two hard EPM draws; one forward pass over the three (BN sees all 3B).
  The policy is untouched.
- ``oracle`` (a positive control, not a method of the paper): cross-entropy
  on images perturbed by ``oracle_fn``, the evaluation's own perturbations
  (``eriep_jax.evaluate.perturbations.oracle``; the experiment passes it, so
  that ``train`` never imports ``evaluate``), with a key folded from the
  step's key. The policy is untouched.

``update_policy=False`` (the ``fixedpolicy`` modifier) skips Algorithm 1's
line 11 for ``eriep``: the EPM perturbs as it came in and is never updated.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from eriep_jax import losses
from eriep_jax import policy as policy_lib
from eriep_jax.data import views as views_lib
from eriep_jax.train.state import TrainState

__all__ = ["METHODS", "OBJECTIVES", "REFERENCES", "train_step", "make_train_step"]

ORACLE_SALT = 0x6F72636C   # the oracle's key: fold_in(step key, ORACLE_SALT)
REFERENCES = ("frozen", "live")
SUPCON_VIEWS = ("supcontrast", "epm")
SUPCON_STAGES = ("encoder", "linear")


def _pmean(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


class _Context(NamedTuple):
  """What every method's objective reads: the step's inputs and its static settings."""
  model: nn.Module
  state: TrainState
  images: jax.Array
  labels: jax.Array
  key: jax.Array
  dropout_key: jax.Array
  perturb: Callable[..., jax.Array]
  reference: str
  alpha: float
  reduction: str
  axis_name: Any
  supcon_stage: str
  supcon_views: str
  temperature: float
  base_temperature: float
  jsd_weight: float
  oracle_fn: Callable[[jax.Array, jax.Array], jax.Array] | None


# Each objective: (ctx, N's params, the policy's params) -> (loss, aux metrics, N's new batch
# statistics, N's logits for the accuracy or None). Adding a method is one function and one
# line of OBJECTIVES.


def _cross_entropy_on(ctx: _Context, params, x_in):
  variables = {"params": params, "batch_stats": ctx.state.batch_stats}
  logits, updates = ctx.model.apply(variables, x_in, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": ctx.dropout_key})
  loss = jnp.mean(losses.cross_entropy(logits, ctx.labels))
  return loss, {"l_n": loss}, updates.get("batch_stats", {}), logits


def _standard(ctx, params, policy_params):
  del policy_params
  return _cross_entropy_on(ctx, params, ctx.images)


def _augment(ctx, params, policy_params):
  x_in = jax.lax.stop_gradient(ctx.perturb(policy_params, ctx.images, ctx.key, mode="hard"))
  return _cross_entropy_on(ctx, params, x_in)


def _oracle(ctx, params, policy_params):
  del policy_params
  x_in = jax.lax.stop_gradient(ctx.oracle_fn(ctx.images, jax.random.fold_in(ctx.key,
                                                                           ORACLE_SALT)))
  return _cross_entropy_on(ctx, params, x_in)


def _eriep(ctx, params, policy_params):
  state = ctx.state
  variables = {"params": params, "batch_stats": state.batch_stats}
  logits, updates = ctx.model.apply(variables, ctx.images, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": ctx.dropout_key})
  x_p = ctx.perturb(policy_params, ctx.images, ctx.key, mode="soft")
  if ctx.reference == "frozen":
    ref_vars = {"params": jax.lax.stop_gradient(state.ref_params),
                "batch_stats": state.ref_batch_stats}
  else:
    ref_vars = {"params": params, "batch_stats": state.batch_stats}
  logits_r = ctx.model.apply(ref_vars, x_p, train=False)
  loss, aux = losses.eriep_loss(logits, logits_r, ctx.labels, alpha=ctx.alpha,
                                reduction=ctx.reduction, axis_name=ctx.axis_name)
  return loss, aux, updates.get("batch_stats", {}), logits


def _second_view_key(k):
  return jax.random.fold_in(k, 0x76696577)


def _apply(ctx, params):
  variables = {"params": params, "batch_stats": ctx.state.batch_stats}
  return functools.partial(ctx.model.apply, variables, rngs={"dropout": ctx.dropout_key})


def _supcon(ctx, params, policy_params):
  apply, images, labels = _apply(ctx, params), ctx.images, ctx.labels
  if ctx.supcon_stage == "linear":
    feats = jax.lax.stop_gradient(apply(images, train=False, method="features"))
    logits = apply(feats, method="head")
    loss = jnp.mean(losses.cross_entropy(logits, labels))
    return loss, {"l_n": loss}, ctx.state.batch_stats, logits
  batch = images.shape[0]
  if ctx.supcon_views == "epm":
    v1 = ctx.perturb(policy_params, images, ctx.key, mode="hard")
    v2 = ctx.perturb(policy_params, images, _second_view_key(ctx.key), mode="hard")
  else:
    pair = views_lib.two_views(images, ctx.key)
    v1, v2 = pair[:, 0], pair[:, 1]
  x_in = jax.lax.stop_gradient(jnp.concatenate([v1, v2]))
  (z, _), new_stats = apply(x_in, train=True, method="embed", mutable=["batch_stats"])
  feats = jnp.stack([z[:batch], z[batch:]], axis=1)   # (B, 2, d)
  loss, aux = losses.supcon_loss(feats, labels, temperature=ctx.temperature,
                                 base_temperature=ctx.base_temperature, axis_name=ctx.axis_name)
  return loss, aux, new_stats.get("batch_stats", {}), None


def _unicl(ctx, params, policy_params):
  del policy_params
  apply, labels = _apply(ctx, params), ctx.labels
  (z, _), new_stats = apply(ctx.images, train=True, method="embed", mutable=["batch_stats"])
  table = apply(method="label_embeddings")
  scale = apply(method="scale")
  loss, aux = losses.unicl_loss(z, table[labels], labels, labels, temperature=1.0 / scale,
                                axis_name=ctx.axis_name)
  logits = scale * z @ table.T
  return loss, dict(aux, logit_scale=scale), new_stats.get("batch_stats", {}), logits


def _jsd(ctx, params, policy_params):
  apply, images = _apply(ctx, params), ctx.images
  v1 = ctx.perturb(policy_params, images, ctx.key, mode="hard")
  v2 = ctx.perturb(policy_params, images, _second_view_key(ctx.key), mode="hard")
  x_in = jnp.concatenate([images, jax.lax.stop_gradient(jnp.concatenate([v1, v2]))])
  logits_all, new_stats = apply(x_in, train=True, mutable=["batch_stats"])
  logits, l1, l2 = jnp.split(logits_all, 3)
  loss, aux = losses.jsd_loss(logits, l1, l2, ctx.labels, weight=ctx.jsd_weight)
  return loss, dict(aux, l_n=aux["ce"]), new_stats.get("batch_stats", {}), logits


# The methods, in the order their names are listed; METHODS is derived from it.
OBJECTIVES = {"eriep": _eriep, "standard": _standard, "augment": _augment, "supcon": _supcon,
              "unicl": _unicl, "jsd": _jsd, "oracle": _oracle}
METHODS = tuple(OBJECTIVES)


def train_step(state: TrainState,
               batch: dict[str, jax.Array],
               key: jax.typing.ArrayLike,
               *,
               model: nn.Module,
               tx: optax.GradientTransformation,
               policy_tx: optax.GradientTransformation,
               learning_rate_fn: Callable[[jax.Array], jax.Array],
               method: str = "eriep",
               reference: str = "frozen",
               alpha: float = 0.5,
               reduction: str = "example",
               sync_freq: int = 100,
               axis_name: Any = "batch",
               perturb_fn: Callable[..., jax.Array] | None = None,
               supcon_stage: str = "encoder",
               supcon_views: str = "supcontrast",
               temperature: float = 0.1,
               base_temperature: float = 0.07,
               jsd_weight: float = 12.0,
               update_policy: bool = True,
               oracle_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One stage-2 update of N and the EPM, and the periodic sync R <- N.

  Args:
    state: the replicated (under pmap) or plain train state.
    batch: ``{'image': float32 (B, H, W, C) in [0, 1], 'label': int (B,)}``,
      this device's shard.
    key: this step's key, ``fold_in(base_key, step)``; the device index is
      folded in here so each device perturbs its shard independently.
    model: the classifier; inside pmap it must be built with
      ``bn_axis_name=axis_name`` so batch statistics span the global batch.
    tx: N's optimizer. policy_tx: the EPM's optimizer.
    learning_rate_fn: N's schedule, for logging.
    method: one of ``METHODS`` (see the module docstring).
    reference: 'frozen' | 'live' (eriep only).
    alpha: Eq. (9)'s weight, >= 0.
    reduction: 'example' | 'batch', see ``eriep_loss``.
    sync_freq: R <- N when the new step count is a multiple of it.
    axis_name: the pmap axis, or None for a single-device step.
    perturb_fn: ``fn(policy_params, images, key, *, mode)``; defaults to
      ``eriep_jax.policy.perturb``.
    supcon_stage, supcon_views, temperature, base_temperature: ``supcon``'s
      settings (``config.supcon``). jsd_weight: ``jsd``'s weight of the JS term.
    update_policy: False skips the EPM update of ``eriep`` (Algorithm 1, line 11).
    oracle_fn: ``fn(images, key) -> images``, required by ``oracle``.

  With ``reference='live'`` R's forward pass runs with N's params in
  inference mode (running batch statistics), so N gets the extra gradient
  alpha * sign(L_N - L_R) * dL_R/dparams through x_p's branch.

  Returns:
    ``(new_state, metrics)``; metrics are averaged over devices, plus the
    policy's ``selection_stats`` after the update (entropy per stage, mean p
    and mu of the selected ops), which show the EPM's drift. A non-finite
    loss or gradient leaves the state unchanged and sets ``finite`` to 0, so
    a NaN state never exists to be saved.
  """
  perturb = perturb_fn or policy_lib.perturb
  key = jnp.asarray(key)
  if axis_name is not None:
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
  # The EPM's draws use `key` itself; dropout/drop-path (ConvNeXt) gets its own.
  dropout_key = jax.random.fold_in(key, 0x64726F70)
  images, labels = batch["image"], batch["label"]
  train_policy = method == "eriep" and update_policy
  if method == "oracle" and oracle_fn is None:
    raise ValueError("method 'oracle' needs oracle_fn, e.g. "
                     "eriep_jax.evaluate.perturbations.oracle (the experiment passes it).")

  ctx = _Context(model=model, state=state, images=images, labels=labels, key=key,
                 dropout_key=dropout_key, perturb=perturb, reference=reference, alpha=alpha,
                 reduction=reduction, axis_name=axis_name, supcon_stage=supcon_stage,
                 supcon_views=supcon_views, temperature=temperature,
                 base_temperature=base_temperature, jsd_weight=jsd_weight, oracle_fn=oracle_fn)
  objective = OBJECTIVES[method]

  def loss_fn(params, policy_params):
    loss, aux, new_stats, logits = objective(ctx, params, policy_params)
    if logits is not None:
      aux["accuracy"] = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    return loss, (aux, new_stats)

  argnums = (0, 1) if train_policy else 0
  (loss, (aux, new_batch_stats)), grads = jax.value_and_grad(
      loss_fn, argnums=argnums, has_aux=True)(state.params, state.policy_params)
  if train_policy:
    grads, policy_grads = grads
  grads = _pmean(grads, axis_name)
  # With BatchNorm(axis_name=...) these are already equal on every device;
  # the pmean keeps replicas bit-identical regardless.
  new_batch_stats = _pmean(new_batch_stats, axis_name)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads),
                 learning_rate=learning_rate_fn(state.step))
  if train_policy:
    policy_grads = _pmean(policy_grads, axis_name)
    p_updates, policy_opt_state = policy_tx.update(policy_grads, state.policy_opt_state,
                                                   state.policy_params)
    # Algorithm 1, line 11, in the stage-1 search's parameterization (projected into [0, 1]).
    policy_params = policy_lib.project(optax.apply_updates(state.policy_params, p_updates))
    metrics["policy_grad_norm"] = optax.tree.norm(policy_grads)
  else:
    policy_params, policy_opt_state = state.policy_params, state.policy_opt_state
  metrics = _pmean(metrics, axis_name)
  # The EPM's drift in stage 2 (identical on every device after the pmean'd update).
  metrics.update(policy_lib.selection_stats(policy_params))

  step = state.step + 1
  ref_params, ref_batch_stats = state.ref_params, state.ref_batch_stats
  if method == "eriep" and reference == "frozen":
    ref_params, ref_batch_stats = losses.sync_reference(
        (params, new_batch_stats), (ref_params, ref_batch_stats), step, sync_freq)
  new_state = state.replace(step=step, params=params, batch_stats=new_batch_stats,
                            opt_state=opt_state, ref_params=ref_params,
                            ref_batch_stats=ref_batch_stats, policy_params=policy_params,
                            policy_opt_state=policy_opt_state)

  finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
  if train_policy:
    finite &= jnp.isfinite(metrics["policy_grad_norm"])
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
  metrics["finite"] = finite.astype(jnp.float32)
  return new_state, metrics


def make_train_step(config, *, model: nn.Module, tx: optax.GradientTransformation,
                    policy_tx: optax.GradientTransformation,
                    learning_rate_fn: Callable[[jax.Array], jax.Array],
                    axis_name: Any = "batch",
                    perturb_fn: Callable[..., jax.Array] | None = None,
                    oracle_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None
                    ) -> Callable:
  """Binds the config's static settings: ``step(state, batch, key)``.

  The returned function is not transformed; wrap it in ``jax.pmap(...,
  axis_name=axis_name)`` (or ``jax.jit`` with ``axis_name=None``).
  """
  return functools.partial(
      train_step, model=model, tx=tx, policy_tx=policy_tx, learning_rate_fn=learning_rate_fn,
      method=config.method, reference=config.reference, alpha=float(config.alpha),
      reduction=config.reduction, sync_freq=int(config.sync_freq), axis_name=axis_name,
      perturb_fn=perturb_fn, update_policy=bool(config.get("update_policy", True)),
      oracle_fn=oracle_fn, **baseline_settings(config))


def baseline_settings(config) -> dict[str, Any]:
  """The step's keyword settings of supcon and jsd, from ``config.supcon`` / ``config.jsd``."""
  sup = config.get("supcon", {})
  return dict(supcon_stage=sup.get("stage", "encoder"),
              supcon_views=sup.get("views", "supcontrast"),
              temperature=float(sup.get("temperature", 0.1)),
              base_temperature=float(sup.get("base_temperature", 0.07)),
              jsd_weight=float(config.get("jsd", {}).get("weight", 12.0)))
