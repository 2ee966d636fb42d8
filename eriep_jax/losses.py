"""Losses of ERIEP: the stage-2 objective (Eq. 5-9) and the reference sync.

Every loss takes logits, not models, so it fits any Flax loop (Linen or NNX)::

  logits_n = model.apply(vars_n, x_o)                 # N on clean images
  logits_r = model.apply(vars_r, x_p)                 # R on perturbed images
  loss, aux = eriep_loss(logits_n, logits_r, labels, alpha=0.5)
  ref_params = sync_reference(params, ref_params, step, sync_freq)

What Eq. (9) does to gradients: with a frozen reference R and an x_p that does
not depend on N, d L_final / d params_N = (1 + alpha * sign(L_N - L_R)) *
d L_N / d params_N. N is trained on clean images only, with a weight between
1 - alpha and 1 + alpha; the perturbed branch reaches only the policy, through
R and x_p. This module implements Eq. (9) as written; the variants live in the
trainer's config (``reference='live'``, ``method='augment'``).

The module also holds the objectives of the comparison methods: the
supervised contrastive loss (:func:`supcon_loss`, Khosla et al. 2020), UniCL's
image-label contrastive loss (:func:`unicl_loss`, Yang et al. 2022) and
AugMix's Jensen-Shannon consistency (:func:`jsd_loss`, Hendrycks et al. 2020).
Their embeddings must be L2-normalised by the caller; the losses do not
normalise them.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["cross_entropy", "critic_loss", "eriep_loss", "gradient_penalty", "gradient_penalty_at",
           "jsd_loss", "policy_loss", "supcon_loss", "sync_reference", "unicl_loss"]

REDUCTIONS = ("example", "batch")


def cross_entropy(logits: jax.typing.ArrayLike,
                  labels: jax.typing.ArrayLike) -> jax.Array:
  """Per-example softmax cross-entropy, Eq. (6) and Eq. (8).

  Computed with ``log_softmax`` (a stable log-sum-exp), so the value and its
  gradient stay finite for any finite logits.

  Args:
    logits: float array of shape (batch, num_classes).
    labels: integer class indices of shape (batch,).

  Returns:
    float32 array of shape (batch,): -log softmax(logits)[label].

  Raises:
    ValueError: if the ranks or batch sizes do not match.
    TypeError: if labels are not integers.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2:
    raise ValueError(f"logits must have shape (batch, num_classes), got shape {logits.shape}; "
                     "flatten extra axes first.")
  if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
    raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits {logits.shape}, "
                     f"got {labels.shape}; pass integer class indices, not one-hot vectors.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}; "
                    "cast them with labels.astype(jnp.int32).")
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def eriep_loss(logits_clean: jax.typing.ArrayLike,
               logits_ref: jax.typing.ArrayLike,
               labels: jax.typing.ArrayLike,
               *,
               alpha: float,
               reduction: str = "example",
               axis_name: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The ERIEP objective L_final = L_N + alpha * |L_N - L_R|, Eq. (9).

  L_N is the cross-entropy of N on clean images (Eq. 5-6) and L_R that of the
  reference R on perturbed images (Eq. 7-8). The loss does not stop gradients:
  a frozen reference is frozen by the caller (R's params are not
  differentiated), so the same function serves ``reference='live'``.

  Args:
    logits_clean: N(x_o), shape (batch, num_classes).
    logits_ref: R(x_p), shape (batch, num_classes).
    labels: integer labels, shape (batch,).
    alpha: weight of the gap term, >= 0. With alpha >= 1 the effective weight
      (1 - alpha) on N's gradient can turn negative (see module docstring).
    reduction: ``'example'`` (default; the literal reading of Eq. 6, 8 and 9,
      whose sums are per image): mean over i of |L_N,i - L_R,i|. ``'batch'``:
      |mean L_N - mean L_R|.
    axis_name: optional pmap/shard_map axis name. Only used by
      ``reduction='batch'``: the sign of the gap is then taken from the means
      over the whole global batch, so that the gradients averaged with
      ``lax.pmean`` equal those of the single-device loss on the global batch.
      The returned loss then equals the global loss after a ``pmean``.

  Returns:
    ``(loss, aux)``: the scalar L_final and a dict with scalars ``l_n`` (mean
    L_N), ``l_r`` (mean L_R), ``gap`` (the reduced |L_N - L_R| term) and
    ``frac_ln_gt_lr`` (fraction of examples with L_N,i > L_R,i).

  Raises:
    ValueError: for a negative alpha, an unknown reduction, or logits whose
      shapes differ.
  """
  if isinstance(alpha, (int, float)) and not alpha >= 0:
    raise ValueError(f"alpha must be >= 0, got {alpha}; Eq. (9) weights |L_N - L_R| by a "
                     "non-negative alpha (try 0.5).")
  if reduction not in REDUCTIONS:
    raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}.")
  logits_clean = jnp.asarray(logits_clean)
  logits_ref = jnp.asarray(logits_ref)
  if logits_clean.shape != logits_ref.shape:
    raise ValueError(f"logits_clean {logits_clean.shape} and logits_ref {logits_ref.shape} must "
                     "have the same shape; run N and R on the same batch of images.")
  l_n = cross_entropy(logits_clean, labels)
  l_r = cross_entropy(logits_ref, labels)
  mean_n, mean_r = jnp.mean(l_n), jnp.mean(l_r)
  if reduction == "example":
    gap = jnp.mean(jnp.abs(l_n - l_r))
  elif axis_name is None:
    gap = jnp.abs(mean_n - mean_r)
  else:
    # |G_N - G_R| over the global batch, differentiated through the local
    # means: d|D|/dD = sign(D), and D's gradient is the pmean of local ones.
    local = mean_n - mean_r
    sign = jnp.sign(jax.lax.stop_gradient(jax.lax.pmean(local, axis_name)))
    gap = sign * local
  loss = mean_n + alpha * gap
  aux = {
      "l_n": mean_n,
      "l_r": mean_r,
      "gap": gap,
      "frac_ln_gt_lr": jnp.mean((l_n > l_r).astype(jnp.float32)),
  }
  return loss, aux


def sync_reference(params: Any, ref_params: Any, step: jax.typing.ArrayLike,
                   sync_freq: int) -> Any:
  """Algorithm 1, lines 12-13: R <- N when ``step % sync_freq == 0``.

  A select on device (``jnp.where`` per leaf), so it works under ``jit`` and
  ``pmap`` with a traced ``step`` and never moves data to the host.

  Args:
    params: N's pytree (params, or a dict with params and batch stats).
    ref_params: R's pytree, same structure as ``params``.
    step: the iteration count (number of completed updates), an int scalar.
    sync_freq: the synchronisation period, a Python int >= 1.

  Returns:
    ``params`` when ``step % sync_freq == 0``, else ``ref_params``.

  Raises:
    ValueError: if sync_freq < 1 or the pytree structures differ.
  """
  if isinstance(sync_freq, bool) or not isinstance(sync_freq, int) or sync_freq < 1:
    raise ValueError(f"sync_freq must be an int >= 1, got {sync_freq!r}; use 1 to sync R <- N "
                     "after every step.")
  if jax.tree.structure(params) != jax.tree.structure(ref_params):
    raise ValueError("params and ref_params must have the same pytree structure; initialise "
                     "R as a copy of N (e.g. ref_params = params).")
  do_sync = jnp.asarray(step) % sync_freq == 0
  return jax.tree.map(lambda p, r: jnp.where(do_sync, p, r), params, ref_params)


# --- Stage 1 (Algorithm 1, "OPTIMIZE EPM"): WGAN-GP losses of Eq. (3)-(4). ---


# How the gradient penalty measures a gradient (``gradient_penalty``'s ``norm``).
GP_NORMS = ("sample", "pixel")
# Faster AutoAugment feeds its critic images in [-1, 1], x_n = 2 x - 1, so a
# gradient with respect to x_n is half the gradient with respect to x in [0, 1].
_DDA_UNIT = 0.5


def _safe_norm(sq: jax.Array) -> jax.Array:
  positive = sq > 0
  # sqrt'(0) is infinite; route zeros through a safe value so that double
  # backprop through the penalty stays finite.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _per_example_norm(grads: jax.Array) -> jax.Array:
  """L2 norm of each example's whole flattened gradient, with a finite derivative at 0."""
  return _safe_norm(jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=1))


def gradient_penalty_at(critic_fn: Callable[[jax.Array], jax.Array],
                        points: jax.typing.ArrayLike,
                        *,
                        target_norm: float = 1.0,
                        norm: str = "sample") -> jax.Array:
  """The WGAN-GP penalty E[(||grad_x D(x)||_2 - target)^2] at given points.

  The deterministic core of :func:`gradient_penalty`. The norm is that of
  each example's whole flattened gradient (over H, W and C together), as in
  the WGAN-GP paper (Gulrajani et al., 2017).

  Args:
    critic_fn: maps a batch (B, ...) to scores (B,). Each score must depend on
      its own example only (no batch-norm in training mode), otherwise the
      gradient of the summed scores is not the per-example gradient.
    points: the points x, shape (B, ...), float.
    target_norm: the norm the penalty pulls towards (1 for a 1-Lipschitz
      critic), >= 0.
    norm: 'sample' (each example's whole gradient, WGAN-GP) or 'pixel'
      (Faster AutoAugment's reimplementation: the L2 norm over the channels of
      each pixel's gradient with respect to images in [-1, 1], i.e. half the
      [0, 1] gradient, and (norm - target)^2 averaged over pixels and examples;
      needs (B, H, W, C) points). See :func:`gradient_penalty`.

  Returns:
    A float32 scalar.

  Raises:
    ValueError: for a negative target_norm, an unknown norm or points without
      a batch axis.
  """
  if norm not in GP_NORMS:
    raise ValueError(f"norm must be one of {GP_NORMS}, got {norm!r}; 'sample' is WGAN-GP's.")
  if isinstance(target_norm, (int, float)) and not target_norm >= 0:
    raise ValueError(f"target_norm must be >= 0, got {target_norm}; WGAN-GP uses 1.0.")
  points = jnp.asarray(points, jnp.float32)
  if points.ndim < 2:
    raise ValueError(f"points must have shape (batch, ...), got {points.shape}; add a batch "
                     "axis with points[None].")

  def summed(x):
    scores = critic_fn(x)
    if scores.shape != (x.shape[0],):
      raise ValueError(f"critic_fn must return scores of shape ({x.shape[0]},), got "
                       f"{scores.shape}; squeeze the last axis of a Dense(1) output.")
    return jnp.sum(scores)

  grads = jax.grad(summed)(points)
  if norm == "pixel":
    if points.ndim != 4:
      raise ValueError(f"norm='pixel' needs images of shape (B, H, W, C), got {points.shape}.")
    per_pixel = _safe_norm(jnp.sum((_DDA_UNIT * grads) ** 2, axis=-1))
    return jnp.mean((per_pixel - target_norm) ** 2)
  return jnp.mean((_per_example_norm(grads) - target_norm) ** 2)


def gradient_penalty(critic_fn: Callable[[jax.Array], jax.Array],
                     real: jax.typing.ArrayLike,
                     fake: jax.typing.ArrayLike,
                     key: jax.Array,
                     *,
                     target_norm: float = 1.0,
                     norm: str = "sample") -> jax.Array:
  """WGAN-GP gradient penalty at random interpolates of real and fake images.

  Draws u ~ U(0, 1) per example, forms x = u * real + (1 - u) * fake and
  returns E[(||grad_x D(x)||_2 - target_norm)^2] (Gulrajani et al., 2017).
  This is the penalty of d_theta in Eq. (3).

  ``norm='sample'`` (default) takes the norm over each example's whole
  flattened gradient with respect to [0, 1] pixels: the standard WGAN-GP.
  Faster AutoAugment's public PyTorch reimplementation (``norm='pixel'``)
  takes ``grad.norm(2, dim=1)``, the L2 norm over the channels of each pixel,
  in its [-1, 1] input units, and averages (norm - 1)^2 over pixels. Per
  sample that is the looser constraint: it lets every pixel's gradient reach
  norm 1 in [-1, 1] units, 2 in [0, 1] units, so a whole-image norm of about
  2 * sqrt(H * W) (64 at 32x32) against 1 here.

  Args:
    critic_fn: maps images (B, H, W, C) to scores (B,); each score must
      depend on its own example only.
    real: real images B', shape (B, H, W, C).
    fake: augmented images A, same shape. Pass them through
      ``jax.lax.stop_gradient`` when only the critic is trained.
    key: PRNG key for the interpolation coefficients.
    target_norm: the gradient norm the penalty pulls towards, >= 0.

  Returns:
    A float32 scalar.

  Raises:
    ValueError: if real and fake differ in shape, or target_norm < 0.
  """
  real = jnp.asarray(real, jnp.float32)
  fake = jnp.asarray(fake, jnp.float32)
  if real.shape != fake.shape:
    raise ValueError(f"real {real.shape} and fake {fake.shape} must have the same shape; "
                     "split the batch into two equal halves.")
  if real.ndim < 2:
    raise ValueError(f"real must have shape (batch, ...), got {real.shape}; add a batch axis.")
  u = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
  points = u * real + (1.0 - u) * fake
  return gradient_penalty_at(critic_fn, points, target_norm=target_norm, norm=norm)


def _check_weight(name: str, value: Any, hint: str) -> None:
  if isinstance(value, (int, float)) and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value}; {hint}")


def critic_loss(scores_real: jax.typing.ArrayLike,
                scores_fake: jax.typing.ArrayLike,
                penalty: jax.typing.ArrayLike,
                logits_real: jax.typing.ArrayLike,
                labels_real: jax.typing.ArrayLike,
                *,
                lambda_gp: float,
                eps: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The critic/classifier step of stage 1 (Eq. 3-4, after Faster AutoAugment).

  The critic maximises its Wasserstein estimate d = E D(B') - E D(A) under the
  gradient penalty, and the shared classifier f learns from the clean batch:

    loss = -(E D(B') - E D(A)) + lambda_gp * GP + eps * CE(f(B'), y')

  A is held fixed here (the caller stops its gradient), so Eq. (4)'s term on
  A does not reach the critic, as in the reference implementation.

  Args:
    scores_real: D(B'), shape (B,).
    scores_fake: D(A), shape (B,).
    penalty: the gradient penalty, a scalar (see :func:`gradient_penalty`).
    logits_real: f(B'), shape (B, num_classes).
    labels_real: integer labels of B', shape (B,).
    lambda_gp: weight of the gradient penalty, >= 0 (10 in WGAN-GP).
    eps: weight of the classification loss, >= 0 (0.1).

  Returns:
    ``(loss, aux)`` with aux scalars ``wasserstein`` (d), ``gp``, ``ce_real``.

  Raises:
    ValueError: for a negative lambda_gp or eps.
  """
  _check_weight("lambda_gp", lambda_gp, "the gradient penalty is added with a non-negative "
                "weight (WGAN-GP uses 10).")
  _check_weight("eps", eps, "Eq. (3) adds the classification loss with a non-negative "
                "weight (try 0.1).")
  wasserstein = jnp.mean(scores_real) - jnp.mean(scores_fake)
  ce_real = jnp.mean(cross_entropy(logits_real, labels_real))
  loss = -wasserstein + lambda_gp * penalty + eps * ce_real
  return loss, {"wasserstein": wasserstein, "gp": jnp.asarray(penalty), "ce_real": ce_real}


def policy_loss(scores_fake: jax.typing.ArrayLike,
                logits_fake: jax.typing.ArrayLike,
                labels_fake: jax.typing.ArrayLike,
                *,
                eps: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The policy step of stage 1: L_EPM of Eq. (3) as seen by the policy.

  With the critic fixed, E D(B') and CE(f(B'), y') do not depend on the
  policy, so minimising d_theta(A, B') + eps * l over (M, P, W) is minimising

    loss = -E D(A) + eps * CE(f(A), y)

  Args:
    scores_fake: D(A), shape (B,), differentiable in the policy.
    logits_fake: f(A), shape (B, num_classes).
    labels_fake: integer labels of A, shape (B,).
    eps: weight of the classification loss, >= 0.

  Returns:
    ``(loss, aux)`` with aux scalars ``score_fake`` (E D(A)) and ``ce_fake``.

  Raises:
    ValueError: for a negative eps.
  """
  _check_weight("eps", eps, "Eq. (3) adds the classification loss with a non-negative "
                "weight (try 0.1).")
  score_fake = jnp.mean(scores_fake)
  ce_fake = jnp.mean(cross_entropy(logits_fake, labels_fake))
  return -score_fake + eps * ce_fake, {"score_fake": score_fake, "ce_fake": ce_fake}


# --- Comparison methods: SupCon, UniCL and AugMix's Jensen-Shannon consistency. ---


def _check_positive(name: str, value: Any, hint: str) -> None:
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name} must be > 0, got {value}; {hint}")


def _check_int_ids(name: str, ids: jax.Array, length: int, hint: str) -> None:
  if ids.shape != (length,):
    raise ValueError(f"{name} must have shape ({length},), got {ids.shape}; {hint}")
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"{name} must be integers, got dtype {ids.dtype}; cast them with "
                    f"{name}.astype(jnp.int32).")


def _check_float(name: str, x: jax.Array) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a float array, got dtype {x.dtype}; cast it with "
                    f"{name}.astype(jnp.float32).")


def _gather(x: jax.Array, axis_name: Any) -> jax.Array:
  """The global batch: every device's ``x`` concatenated along axis 0, in device order."""
  # all_gather transposes to a reduce-scatter, so each device's features get
  # the cotangents that every device's loss sends them.
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _offset(n_local: int, axis_name: Any) -> jax.Array | int:
  """Global index of this device's first row in the gathered batch."""
  return 0 if axis_name is None else jax.lax.axis_index(axis_name) * n_local


def _mean_over_positives(log_prob: jax.Array, positive: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-row mean of ``log_prob`` over the positive entries, 0 for a row without any."""
  count = jnp.sum(positive, axis=1)
  total = jnp.sum(jnp.where(positive, log_prob, 0.0), axis=1)
  return total / jnp.maximum(count, 1), count


def supcon_loss(features: jax.typing.ArrayLike,
                labels: jax.typing.ArrayLike | None = None,
                *,
                temperature: float = 0.1,
                base_temperature: float = 0.07,
                axis_name: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Supervised contrastive loss L_out^sup (Khosla et al. 2020, Eq. 2).

  SupContrast's ``contrast_mode='all'``: each of the B * V vectors z_a is an
  anchor, its contrast set A(a) is the other B * V - 1 vectors and its
  positives P(a) are the vectors of A(a) with the same label (with
  ``labels=None``, SimCLR: the other views of the same image). Per anchor

    l_a = -(temperature / base_temperature) / |P(a)|
          * sum_{p in P(a)} log( exp(z_a.z_p / t) / sum_{c in A(a)} exp(z_a.z_c / t) )

  with t = temperature, and the loss is the mean of l_a over all anchors. The
  logits are shifted by their maximum over A(a) (not differentiated), which
  leaves the value unchanged.

  An anchor without positives (a label seen once, with V = 1) has l_a = 0 and
  still counts in the mean, as in SupContrast: the loss is pulled towards 0
  by such anchors, and is exactly 0 when no anchor has a positive.
  ``aux['frac_anchors_without_positive']`` reports how many there are.

  Args:
    features: float array (B, V, D): V views of each of B images, each vector
      already L2-normalised by the caller (this function does not normalise).
    labels: integer class labels (B,), or None for SimCLR (needs V >= 2).
    temperature: t of the logits z_a.z_c / t, > 0 (a Python float or a scalar
      array).
    base_temperature: the loss is scaled by temperature / base_temperature,
      as in SupContrast; pass base_temperature = temperature for Eq. (2)
      exactly.
    axis_name: optional pmap axis. The features and labels of all devices are
      gathered; the anchors are this device's vectors and their contrast set
      is the global batch (minus the anchor itself). The returned loss is the
      mean over local anchors, so that ``lax.pmean`` of it, and of its
      gradients, equal the single-device loss and gradient on the global
      batch (every device must hold the same B).

  Returns:
    ``(loss, aux)``: the scalar loss and a dict with scalars
    ``positives_per_anchor`` (mean |P(a)|) and
    ``frac_anchors_without_positive`` (both over local anchors).

  Raises:
    ValueError: if features is not rank 3, labels is None with V = 1,
      labels' shape is not (B,), or a temperature is not positive.
    TypeError: if features are not floats or labels are not integers.
  """
  features = jnp.asarray(features)
  if features.ndim != 3:
    raise ValueError(f"features must have shape (batch, views, dim), got {features.shape}; "
                     "add a views axis with features[:, None] for one view per image.")
  _check_float("features", features)
  _check_positive("temperature", temperature, "SupCon uses 0.1 (SupContrast's default 0.07).")
  _check_positive("base_temperature", base_temperature, "SupContrast uses 0.07.")
  batch, views, dim = features.shape
  if labels is None:
    if views == 1:
      raise ValueError("labels=None (SimCLR) needs at least 2 views per image, got features of "
                       f"shape {features.shape}; pass labels or a second augmented view.")
    # Image ids, unique across devices: positives are the other views.
    ids = jnp.arange(batch) + _offset(batch, axis_name)
  else:
    ids = jnp.asarray(labels)
    _check_int_ids("labels", ids, batch, "pass one integer class index per image, not per view "
                   "or one-hot.")
  # Image-major rows (row i * V + j is view j of image i): this device's rows
  # are then one contiguous block of the gathered batch.
  anchors = jnp.reshape(features, (batch * views, dim)).astype(jnp.float32)
  anchor_ids = jnp.repeat(ids, views)
  contrast = _gather(anchors, axis_name)
  contrast_ids = _gather(anchor_ids, axis_name)
  logits = anchors @ contrast.T / temperature
  rows = jnp.arange(batch * views) + _offset(batch * views, axis_name)
  not_self = rows[:, None] != jnp.arange(contrast.shape[0])[None, :]
  positive = (anchor_ids[:, None] == contrast_ids[None, :]) & not_self
  # Log-softmax over A(a) = everything but the anchor itself. Shifting by the
  # max over A(a) keeps at least one exp at 1, so the log never sees 0 (and an
  # empty A(a), a single vector in all, has no positives and gives 0).
  shift = jnp.max(jnp.where(not_self, logits, -jnp.inf), axis=1, keepdims=True)
  shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
  shifted = logits - shift
  exp = jnp.where(not_self, jnp.exp(jnp.where(not_self, shifted, 0.0)), 0.0)
  denom = jnp.sum(exp, axis=1, keepdims=True)
  log_prob = shifted - jnp.log(jnp.where(denom > 0, denom, 1.0))
  mean_log_prob, count = _mean_over_positives(log_prob, positive)
  loss = -(temperature / base_temperature) * jnp.mean(mean_log_prob)
  aux = {
      "positives_per_anchor": jnp.mean(count.astype(jnp.float32)),
      "frac_anchors_without_positive": jnp.mean((count == 0).astype(jnp.float32)),
  }
  return loss, aux


def unicl_loss(image_embeddings: jax.typing.ArrayLike,
               label_embeddings: jax.typing.ArrayLike,
               image_labels: jax.typing.ArrayLike,
               label_ids: jax.typing.ArrayLike,
               *,
               temperature: jax.typing.ArrayLike,
               axis_name: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """UniCL's bidirectional image-label contrastive loss (Yang et al., CVPR 2022).

  With u_i the image embeddings, v_t the label ("text") embeddings and
  s_it = u_i.v_t / temperature, the pair (i, t) is positive when
  ``image_labels[i] == label_ids[t]``; P(i) are the positive texts of image
  i and P(t) the positive images of text t. Then

    L_i2t = mean_i [ -(1/|P(i)|) sum_{t in P(i)} log softmax_t(s_i,:)_t ]
    L_t2i = mean_t [ -(1/|P(t)|) sum_{i in P(t)} log softmax_i(s_:,t)_i ]
    loss  = L_i2t + L_t2i

  (the softmax of L_i2t runs over all T texts, that of L_t2i over all B
  images). A row or column without positives contributes 0 and still counts
  in its mean.

  Special cases: with each of K class embeddings once (``label_ids =
  arange(K)``), L_i2t is the softmax cross-entropy of u @ v.T / temperature;
  with one distinct label per pair and T = B, the loss is CLIP's symmetric
  InfoNCE; with ``label_embeddings = class_table[labels]`` and ``label_ids =
  labels`` (UniCL's batch: one text per image, every same-label pair
  positive), the loss is UniCL's.

  Args:
    image_embeddings: float (B, D), L2-normalised by the caller.
    label_embeddings: float (T, D), L2-normalised by the caller.
    image_labels: integer (B,), the class of each image.
    label_ids: integer (T,), the class of each text.
    temperature: > 0, a Python float or a scalar array that may be traced
      (e.g. 1 / exp(learnable logit scale)).
    axis_name: optional pmap axis. Images and texts of all devices are
      gathered; L_i2t runs over the local images against the global texts and
      L_t2i over the local texts against the global images, so that
      ``lax.pmean`` of the loss (and of its gradients) equals the
      single-device loss on the global batch (every device must hold the same
      B and T).

  Returns:
    ``(loss, aux)``: the scalar loss and ``{'i2t': L_i2t, 't2i': L_t2i}``.

  Raises:
    ValueError: for embeddings that are not rank 2 or differ in D, ids whose
      shape does not match, a temperature that is not a positive scalar.
    TypeError: for embeddings that are not floats or ids that are not integers.
  """
  u = jnp.asarray(image_embeddings)
  v = jnp.asarray(label_embeddings)
  for name, x in (("image_embeddings", u), ("label_embeddings", v)):
    if x.ndim != 2:
      raise ValueError(f"{name} must have shape (batch, dim), got {x.shape}; flatten extra "
                       "axes first.")
    _check_float(name, x)
  if u.shape[1] != v.shape[1]:
    raise ValueError(f"image_embeddings {u.shape} and label_embeddings {v.shape} must have the "
                     "same embedding size; project both into one space.")
  image_labels = jnp.asarray(image_labels)
  label_ids = jnp.asarray(label_ids)
  _check_int_ids("image_labels", image_labels, u.shape[0], "pass one class index per image.")
  _check_int_ids("label_ids", label_ids, v.shape[0], "pass one class index per label "
                 "embedding.")
  if jnp.ndim(temperature) != 0:
    raise ValueError(f"temperature must be a scalar, got shape {jnp.shape(temperature)}; pass "
                     "one value for the whole batch.")
  _check_positive("temperature", temperature, "UniCL learns it as 1 / exp(logit scale), "
                  "starting near 0.07.")
  u = u.astype(jnp.float32)
  v = v.astype(jnp.float32)
  u_all, labels_all = _gather(u, axis_name), _gather(image_labels, axis_name)
  v_all, ids_all = _gather(v, axis_name), _gather(label_ids, axis_name)
  log_p_i2t = jax.nn.log_softmax(u @ v_all.T / temperature, axis=1)
  log_p_t2i = jax.nn.log_softmax(v @ u_all.T / temperature, axis=1)
  i2t, _ = _mean_over_positives(log_p_i2t, image_labels[:, None] == ids_all[None, :])
  t2i, _ = _mean_over_positives(log_p_t2i, label_ids[:, None] == labels_all[None, :])
  i2t, t2i = -jnp.mean(i2t), -jnp.mean(t2i)
  return i2t + t2i, {"i2t": i2t, "t2i": t2i}


JSD_MIXTURE_FLOOR = 1e-7


def jsd_loss(logits_clean: jax.typing.ArrayLike,
             logits_aug1: jax.typing.ArrayLike,
             logits_aug2: jax.typing.ArrayLike,
             labels: jax.typing.ArrayLike,
             *,
             weight: float = 12.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """AugMix's loss: clean cross-entropy plus Jensen-Shannon consistency (Hendrycks et al. 2020).

    loss = mean_b CE(logits_clean, labels) + weight * JS
    JS   = mean_b (1/3) sum_k KL(p_k || M),   k in {clean, aug1, aug2}

  with p_k = softmax(logits_k) and M = clip((p_clean + p_aug1 + p_aug2) / 3,
  1e-7, 1), clamped before its log as in AugMix's code (so JS is slightly
  off where M < 1e-7, and M gets no gradient there). log p_k is taken from
  ``log_softmax``, so the KL terms and their gradients stay finite, and a
  p_k that underflows to 0 contributes 0.

  Args:
    logits_clean: (B, num_classes), the network on the clean images.
    logits_aug1: same shape, on the first AugMix view.
    logits_aug2: same shape, on the second AugMix view.
    labels: integer labels (B,).
    weight: the consistency weight lambda, >= 0 (AugMix uses 12).

  Returns:
    ``(loss, aux)``: the scalar loss and ``{'ce': ..., 'js': ...}``.

  Raises:
    ValueError: for logits of different shapes or a negative weight.
    TypeError: if labels are not integers.
  """
  _check_weight("weight", weight, "AugMix adds the Jensen-Shannon term with weight 12.")
  logits = [jnp.asarray(x) for x in (logits_clean, logits_aug1, logits_aug2)]
  if not logits[0].shape == logits[1].shape == logits[2].shape:
    raise ValueError(f"logits_clean {logits[0].shape}, logits_aug1 {logits[1].shape} and "
                     f"logits_aug2 {logits[2].shape} must have the same shape; run the network "
                     "on the three views of the same batch.")
  ce = jnp.mean(cross_entropy(logits[0], labels))
  log_p = [jax.nn.log_softmax(x.astype(jnp.float32), axis=-1) for x in logits]
  p = [jnp.exp(x) for x in log_p]
  log_m = jnp.log(jnp.clip((p[0] + p[1] + p[2]) / 3.0, JSD_MIXTURE_FLOOR, 1.0))
  kl = sum(jnp.sum(pk * (lpk - log_m), axis=-1) for pk, lpk in zip(p, log_p))
  js = jnp.mean(kl / 3.0)
  return ce + weight * js, {"ce": ce, "js": js}
