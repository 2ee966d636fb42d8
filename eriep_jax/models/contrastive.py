"""Table 4's contrastive baselines as classifiers: SupCon and UniCL heads on any registry model.

``ContrastiveNet`` wraps a registry classifier (its ``base``) and keeps the
``ImageClassifier`` contract, so that evaluation, Grad-CAM and ``restore`` use
it unchanged::

  logits = model.apply(variables, x, train=False)
  logits, feats = model.apply(variables, x, return_features=True)   # base's last conv map
  logits = model.apply(variables, feats, method='head')
  z, pooled = model.apply(variables, x, train=True, method='embed', mutable=['batch_stats'])

The encoder is the base's conv stack, and its representation is the global
average of the last conv map (the base's own MLP head is kept but unused, so
a checkpoint of the wrapper still holds a complete base model).

- ``kind='supcon'`` (Khosla et al., 2020): ``embed`` is SupContrast's 'mlp'
  projection, Dense(c)-ReLU-Dense(proj_dim), L2-normalised. The classifier is
  the linear layer ``linear`` on the pooled representation, trained on the
  frozen encoder after the contrastive stage, as SupContrast evaluates.
- ``kind='unicl'`` (Yang et al., 2022): ``embed`` is a linear projection to
  ``proj_dim``, L2-normalised; the "text encoder" of image-label data is a
  learnable lookup table of class embeddings (``class_embeddings``), and the
  logits are ``exp(logit_scale) * z @ normalize(E).T``, the nearest class
  embedding by cosine (the scale, CLIP's learnable inverse temperature, is
  clipped at 100 as in CLIP).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ContrastiveNet", "KINDS", "l2_normalize"]

KINDS = ("supcon", "unicl")
MAX_LOGIT_SCALE = 100.0


def l2_normalize(x: jax.typing.ArrayLike, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along ``axis`` (torch's F.normalize), finite gradient at 0."""
  x = jnp.asarray(x, jnp.float32)
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


class _Projection(nn.Module):
  """SupContrast's 'mlp' head (Dense(c)-ReLU-Dense(d)) or UniCL's linear map, L2-normalised."""
  proj_dim: int
  mlp: bool

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    if self.mlp:
      pooled = nn.relu(nn.Dense(pooled.shape[-1], name="hidden")(pooled))
      return l2_normalize(nn.Dense(self.proj_dim, name="out")(pooled))
    return l2_normalize(nn.Dense(self.proj_dim, use_bias=False, name="out")(pooled))


class ContrastiveNet(nn.Module):
  """A registry classifier with a contrastive projection and a matching classifier.

  Attributes:
    base: the registry classifier (``eriep_jax.models.get_model``) whose conv
      stack is the encoder.
    num_classes: number of classes.
    kind: 'supcon' or 'unicl'.
    proj_dim: size of the L2-normalised embedding (128 in SupContrast).
    logit_scale_init: UniCL's initial inverse temperature (1 / 0.07, CLIP's).
  """
  base: nn.Module
  num_classes: int
  kind: str = "supcon"
  proj_dim: int = 128
  logit_scale_init: float = 1.0 / 0.07

  def setup(self):
    if self.kind not in KINDS:
      raise ValueError(f"unknown contrastive kind {self.kind!r}; use one of {KINDS}.")
    self.projection = _Projection(self.proj_dim, mlp=self.kind == "supcon")
    if self.kind == "supcon":
      self.linear = nn.Dense(self.num_classes)
    else:
      self.class_embeddings = self.param("class_embeddings", nn.initializers.normal(1.0),
                                         (self.num_classes, self.proj_dim))
      self.logit_scale = self.param(
          "logit_scale", lambda _: jnp.asarray(math.log(self.logit_scale_init), jnp.float32))

  # --- encoder and projection ---

  def features(self, x: jax.typing.ArrayLike, *, train: bool = False) -> jax.Array:
    """The base's last conv map (B, h, w, c), float32."""
    _, feats = self.base(x, train=train, return_features=True)
    return feats

  @staticmethod
  def pool(features: jax.Array) -> jax.Array:
    return jnp.mean(features.astype(jnp.float32), axis=(1, 2))

  def _project(self, pooled: jax.Array) -> jax.Array:
    return self.projection(pooled)

  def embed(self, x: jax.typing.ArrayLike, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """(the L2-normalised embedding (B, proj_dim), the pooled representation (B, c))."""
    pooled = self.pool(self.features(x, train=train))
    return self._project(pooled), pooled

  def label_embeddings(self) -> jax.Array:
    """UniCL: the L2-normalised class-embedding table (num_classes, proj_dim)."""
    return l2_normalize(self.class_embeddings)

  def scale(self) -> jax.Array:
    """UniCL: exp(logit_scale), clipped at 100 (CLIP); the inverse temperature."""
    return jnp.minimum(jnp.exp(self.logit_scale), MAX_LOGIT_SCALE)

  # --- the classifier contract ---

  def classify_pooled(self, pooled: jax.Array) -> jax.Array:
    """Logits from the pooled representation (B, c)."""
    if self.kind == "supcon":
      return self.linear(pooled).astype(jnp.float32)
    z = self._project(pooled)
    return self.scale() * z @ self.label_embeddings().T

  def head(self, features: jax.typing.ArrayLike, *, train: bool = False) -> jax.Array:
    """Maps the last conv map (from ``return_features``) to logits (Grad-CAM's head)."""
    del train
    features = jnp.asarray(features)
    if features.ndim != 4:
      raise ValueError(f"head expects features of shape (batch, h, w, c), got "
                       f"{features.shape}; pass the map returned with return_features=True.")
    return self.classify_pooled(self.pool(features))

  def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False,
               return_features: bool = False):
    feats = self.features(x, train=train)
    logits = self.classify_pooled(self.pool(feats))
    if self.is_initializing() and self.kind == "supcon":
      self._project(self.pool(feats))   # create the projection's params at init
    if return_features:
      return logits, feats
    return logits


def wrap(base: nn.Module, num_classes: int, kind: str, **options: Any) -> ContrastiveNet:
  """``ContrastiveNet(base, ...)`` with its options checked."""
  proj_dim = options.get("proj_dim", 128)
  if isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or proj_dim < 1:
    raise ValueError(f"contrastive.proj_dim={proj_dim!r} must be a positive int, e.g. 128.")
  scale = options.get("logit_scale_init", 1.0 / 0.07)
  if not (isinstance(scale, (int, float)) and 0 < scale <= MAX_LOGIT_SCALE):
    raise ValueError(f"contrastive.logit_scale_init={scale!r} must be in (0, "
                     f"{MAX_LOGIT_SCALE}], e.g. 1/0.07 (CLIP's).")
  return ContrastiveNet(base=base, num_classes=num_classes, kind=kind, proj_dim=proj_dim,
                        logit_scale_init=float(scale))
