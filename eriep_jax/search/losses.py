"""Stage 1's losses (Algorithm 1, "OPTIMIZE EPM"): the WGAN-GP terms of Eq. (3)-(4).

The critic's loss with its gradient penalty and f's cross-entropy on real images
(:func:`critic_loss`), and the policy's (:func:`policy_loss`). Stage 2's objective is
``eriep_jax.losses``.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from eriep_jax.losses import cross_entropy

__all__ = ["GP_NORMS", "critic_loss", "gradient_penalty", "gradient_penalty_at", "policy_loss"]


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
