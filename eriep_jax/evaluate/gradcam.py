r"""Grad-CAM (Selvaraju et al., 2019), the Fig. 4 blur, and a CAM-stability score.

    cams = grad_cam(model, variables, images)              # (B, H, W) in [0, 1]
    cams = grad_cam(model, variables, images, labels)      # for given classes
    blurred = fig4_blur(images)                            # the paper's radius-9 blur, scaled
    score = cam_stability(config, model=model, variables=variables)   # over the test split

Grad-CAM. For the last convolutional feature map A (B, h, w, c), the one every
registry model returns with ``return_features=True``, and the class score y_k
of the model's ``head`` (A -> logits):

    alpha_c = mean_{i,j} d y_k / d A_{ijc}            (the channel weights)
    cam     = ReLU(sum_c alpha_c A_c)                 (h, w)

then bilinear upsampling to the input's H x W with half-pixel centres (the
``cv2.resize`` / ``tf.image.resize`` convention of the reference code) and
division by the map's maximum, so that each map lies in [0, 1] with 0 where the
ReLU cut. A map that is 0 everywhere (no positive evidence) stays 0; the
division is guarded, so gradients stay finite. The class k is the predicted
one unless ``labels`` are given. One ``jax.grad`` serves the whole batch: in
inference mode the head treats examples independently, so the gradient of the
sum of the selected scores is every example's own gradient.

The blur of Fig. 4. The paper blurs 224-pixel ImageNet images "with a radius
of 9". We read the radius as the Gaussian's standard deviation, as in PIL's
``ImageFilter.GaussianBlur(radius)``, the usual tool for such figures, and
scale it with the image: sigma = 9 * H / 224 (1.29 pixels at 32 x 32). The
kernel spans +-3 sigma (odd size 2 ceil(3 sigma) + 1, capped below the image
size) with torchvision's reflect padding. ``blur_radius_224`` in
``config.gradcam`` changes the 9.

The stability score goes beyond the paper's two hand-picked images: over the
whole test split, for each image, the Pearson correlation between CAM(x) and
CAM(blur(x)) and the IoU of their top-20% regions (the ceil(0.2 H W)
highest-valued pixels of each map, ties broken by position), both for the
same class (``config.gradcam.target``: the true label by default, so that a
changed prediction does not move the map to another class's evidence; or
'predicted', each image's own prediction). Averaged over the split, each is
one number per run; higher is more stable. A map that is constant (all zero)
has no defined correlation; it counts as 0 and the number of such images is
reported.

matplotlib is imported inside ``plot_panel`` only.
"""

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax import data
from eriep_jax import images as images_lib
from eriep_jax import parallel
from eriep_jax.evaluate import perturbations

__all__ = ["grad_cam", "fig4_blur", "blur_sigma", "cam_pairs_scores", "cam_stability",
           "plot_panel", "check_gradcam_config", "TARGETS", "TOP_FRACTION"]

TARGETS = ("label", "predicted")
TOP_FRACTION = 0.2   # the top-20% region of the IoU


def _cam(model: Any, variables: Any, images: jax.Array, labels: jax.Array | None) -> jax.Array:
  """Grad-CAM of ``images`` (already checked) for ``labels`` (None: the predictions)."""
  logits, feats = model.apply(variables, images, train=False, return_features=True)
  if labels is None:
    classes = jnp.argmax(logits, axis=-1)
  else:
    classes = jnp.asarray(labels, jnp.int32)

  def score(f):
    out = model.apply(variables, f, method="head")
    return jnp.take_along_axis(out, classes[:, None], axis=1).sum()

  grads = jax.grad(score)(feats)
  weights = jnp.mean(grads, axis=(1, 2))                                # (B, c)
  cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", feats, weights))       # (B, h, w)
  b, height, width = images.shape[0], images.shape[1], images.shape[2]
  cam = jax.image.resize(cam, (b, height, width), method="bilinear", antialias=False)
  cam = jnp.maximum(cam, 0.0)   # bilinear weights are convex: only rounding can go below 0
  peak = jnp.max(cam, axis=(1, 2), keepdims=True)
  safe = jnp.where(peak > 0, peak, 1.0)
  return jnp.where(peak > 0, cam / safe, 0.0)


_JITTED = {}


def _jitted(model: Any):
  key = (type(model), repr(model))
  if key not in _JITTED:
    _JITTED[key] = jax.jit(lambda v, x, y: _cam(model, v, x, y))
  return _JITTED[key]


def grad_cam(model: Any, variables: Any, images: jax.typing.ArrayLike,
             labels: jax.typing.ArrayLike | None = None) -> jax.Array:
  """Grad-CAM heat maps of a registry classifier at the input resolution.

  Jit-able and batched (one VJP for the whole batch); called eagerly it runs
  a cached ``jax.jit`` per model.

  Args:
    model: a classifier of ``eriep_jax.models.get_model`` (or any Flax module
      with ``return_features=True`` and a ``head`` method).
    variables: its ``{'params', 'batch_stats'?}``; inference mode is used.
    images: float images in [0, 1], (B, H, W, 3).
    labels: (B,) int classes to explain; None (default) explains each image's
      predicted class.

  Returns:
    float32 (B, H, W) maps in [0, 1] (see the module docstring).

  Raises:
    ValueError: on a wrong image rank, channel count or size, or ``labels``
      of the wrong shape.
    TypeError: on integer images or non-integer labels.
  """
  x = images_lib.check_images(images, name="images", caller="grad_cam", float32_only=False,
                              channels=(3,))
  x = x.astype(jnp.float32)
  y = None
  if labels is not None:
    y = jnp.asarray(labels)
    if y.shape != (x.shape[0],):
      raise ValueError(f"grad_cam expects labels of shape ({x.shape[0]},), one class per "
                       f"image, got {y.shape}; pass labels=None to explain the predictions.")
    if not jnp.issubdtype(y.dtype, jnp.integer):
      raise TypeError(f"grad_cam expects integer labels, got dtype {y.dtype}; pass class "
                      "indices, e.g. labels.astype(jnp.int32).")
    y = y.astype(jnp.int32)
  return _jitted(model)(variables, x, y)   # under an outer jit this inlines


def blur_sigma(image_size: int, radius_224: float = 9.0) -> float:
  """The Fig. 4 blur's sigma for ``image_size`` pixels: radius 9 at 224, scaled."""
  if not radius_224 > 0:
    raise ValueError(f"blur_radius_224={radius_224!r} must be positive, e.g. 9.0 (the paper).")
  return float(radius_224) * float(image_size) / 224.0


def fig4_blur(images: jax.typing.ArrayLike, *, radius_224: float = 9.0) -> jax.Array:
  """The Gaussian blur of Fig. 4, scaled to the image size (see the module docstring).

  Args:
    images: float images in [0, 1], (B, H, W, C).
    radius_224: the blur's sigma at 224 pixels (the paper's 9).

  Returns:
    The blurred images, same shape and dtype.
  """
  x = images_lib.check_images(images, name="images", caller="fig4_blur", float32_only=False,
                              channels=None, min_size=2)
  size = min(x.shape[1], x.shape[2])
  sigma = blur_sigma(x.shape[1], radius_224)
  half = min(int(math.ceil(3.0 * sigma)), size - 1)   # reflect padding needs half < size
  return perturbations.gaussian_blur(x, kernel_size=2 * half + 1, sigma=sigma)


def cam_pairs_scores(a: jax.Array, b: jax.Array) -> dict[str, jax.Array]:
  """Per-image Pearson correlation and top-20% IoU of two batches of maps (B, H, W).

  Returns:
    ``{'pearson': (B,), 'iou': (B,), 'constant': (B,) bool}``; ``pearson`` is
    0 where either map is constant (``constant`` is True there).
  """
  a = a.reshape(a.shape[0], -1).astype(jnp.float32)
  b = b.reshape(b.shape[0], -1).astype(jnp.float32)
  da = a - a.mean(axis=1, keepdims=True)
  db = b - b.mean(axis=1, keepdims=True)
  va, vb = jnp.sum(da * da, axis=1), jnp.sum(db * db, axis=1)
  ok = (va > 1e-12) & (vb > 1e-12)
  denom = jnp.sqrt(jnp.where(ok, va * vb, 1.0))
  pearson = jnp.where(ok, jnp.sum(da * db, axis=1) / denom, 0.0)
  n = a.shape[1]
  k = max(1, int(math.ceil(TOP_FRACTION * n)))
  _, ia = jax.lax.top_k(a, k)
  _, ib = jax.lax.top_k(b, k)
  ma = jnp.zeros_like(a).at[jnp.arange(a.shape[0])[:, None], ia].set(1.0)
  mb = jnp.zeros_like(b).at[jnp.arange(b.shape[0])[:, None], ib].set(1.0)
  inter = jnp.sum(ma * mb, axis=1)
  iou = inter / (2.0 * k - inter)
  return {"pearson": pearson, "iou": iou, "constant": ~ok}


def check_gradcam_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.gradcam`` (or an empty block), with ``target`` and the radius checked."""
  g = config.get("gradcam") or ml_collections.ConfigDict()
  target = g.get("target", "label")
  if target not in TARGETS:
    raise ValueError(f"gradcam.target={target!r} is unknown; use one of {TARGETS}.")
  blur_sigma(32, float(g.get("blur_radius_224", 9.0)))   # validates the radius
  return g


_STEPS = {}


def _stability_step(model: Any, target: str, radius_224: float):
  key = (type(model), repr(model), target, radius_224)
  if key in _STEPS:
    return _STEPS[key]

  def step(variables, batch):
    x, mask = batch["image"], batch["mask"].astype(jnp.float32)
    labels = batch["label"] if target == "label" else None
    if labels is None:   # the same class for both maps: the clean image's prediction
      labels = jnp.argmax(model.apply(variables, x, train=False), axis=-1)
    s = cam_pairs_scores(_cam(model, variables, x, labels),
                         _cam(model, variables, fig4_blur(x, radius_224=radius_224), labels))
    sums = jnp.stack([jnp.sum(s["pearson"] * mask), jnp.sum(s["iou"] * mask),
                      jnp.sum(s["constant"] * mask), jnp.sum(mask)])
    return jax.lax.psum(sums, "batch")

  _STEPS[key] = jax.pmap(step, axis_name="batch")
  return _STEPS[key]


def cam_stability(config: ml_collections.ConfigDict, *, model: Any, variables: Any,
                  split: str = "test") -> dict[str, Any]:
  """Mean CAM(x)-vs-CAM(blur(x)) Pearson correlation and top-20% IoU over ``split``.

  Args:
    config: the run's config (``data``, ``eval_batch_size`` and the optional
      ``gradcam`` block: ``target``, ``blur_radius_224``).
    model: the classifier.
    variables: its variables on the host.
    split: the split to score (the whole split, padding masked out).

  Returns:
    ``{'pearson', 'top20_iou', 'num_examples', 'num_constant_maps',
    'blur_sigma_px', 'target'}``.
  """
  g = check_gradcam_config(config)
  target, radius = g.get("target", "label"), float(g.get("blur_radius_224", 9.0))
  step = _stability_step(model, target, radius)
  rvars = parallel.replicate(variables)
  totals = np.zeros(4, np.float64)
  size = None
  for batch in data.eval_iterator(config, split, batch_size=config.eval_batch_size):
    size = int(batch["image"].shape[2])
    batch = {k: batch[k] for k in ("image", "label", "mask")}
    totals += np.asarray(jax.device_get(step(rvars, batch)[0]), np.float64)
  n = max(int(round(totals[3])), 1)
  return {"pearson": float(totals[0] / n), "top20_iou": float(totals[1] / n),
          "num_examples": int(round(totals[3])), "num_constant_maps": int(round(totals[2])),
          "blur_sigma_px": blur_sigma(size or 32, radius), "target": target}


def _overlay(ax, image: np.ndarray, cam: np.ndarray | None) -> None:
  ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
  if cam is not None:
    ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear")
  ax.set_xticks([])
  ax.set_yticks([])


def plot_panel(images: np.ndarray, blurred: np.ndarray, cams: dict[str, np.ndarray],
               path: str, *, titles: Sequence[str], row_labels: Sequence[str] = (),
               suptitle: str = "") -> None:
  """The Fig. 4 panel: one row per image, five columns.

  Args:
    images: (N, H, W, 3) originals.
    blurred: (N, H, W, 3) their blurred versions.
    cams: ``{'standard_clean', 'eriep_blur', 'standard_blur'}`` -> (N, H, W).
    path: the PNG to write.
    titles: the five column titles.
    row_labels: one label per row (e.g. the class), optional.
    suptitle: the figure title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(images)
  fig, axes = plt.subplots(n, 5, figsize=(7.5, 1.6 * n + 0.6), squeeze=False)
  columns = [(images, None), (images, cams["standard_clean"]), (blurred, None),
             (blurred, cams["eriep_blur"]), (blurred, cams["standard_blur"])]
  for i in range(n):
    for j, (imgs, cam) in enumerate(columns):
      _overlay(axes[i, j], imgs[i], None if cam is None else cam[i])
      if i == 0:
        axes[i, j].set_title(titles[j], fontsize=7)
    if row_labels:
      axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
  if suptitle:
    fig.suptitle(suptitle, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)
