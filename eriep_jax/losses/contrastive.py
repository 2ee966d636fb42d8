"""The comparison methods' objectives: SupCon, UniCL and AugMix's Jensen-Shannon consistency.

The supervised contrastive loss (:func:`supcon_loss`, Khosla et al. 2020), UniCL's
image-label contrastive loss (:func:`unicl_loss`, Yang et al. 2022) and AugMix's
Jensen-Shannon consistency (:func:`jsd_loss`, Hendrycks et al. 2020). Their
embeddings must be L2-normalised by the caller; the losses do not normalise them.
"""

from typing import Any

import jax
import jax.numpy as jnp

from eriep_jax.losses.eriep import cross_entropy

__all__ = ["JSD_MIXTURE_FLOOR", "jsd_loss", "supcon_loss", "unicl_loss"]


def _check_weight(name: str, value: Any, hint: str) -> None:
  if isinstance(value, (int, float)) and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value}; {hint}")


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
