"""CIFAR-10-C (Hendrycks & Dietterich, 2019): accuracy under common corruptions, through TFDS.

The data set. CIFAR-10-C is the CIFAR-10 test split (10,000 images, 32x32x3)
with each of 19 corruptions applied at 5 severities: 15 "common" ones, the
benchmark (``COMMON_CORRUPTIONS``, in the paper's order), and 4 held-out
"extra" ones (``EXTRA_CORRUPTIONS``). TFDS stores it as 95 configs of
``cifar10_corrupted`` (one per corruption and severity, a 'test' split each);
two of its config names differ from the paper's: ``glass_blur`` is
``frosted_glass_blur`` and ``elastic_transform`` is ``elastic``. This module
uses the paper's names everywhere (and accepts the TFDS ones as aliases).

Preparing it. Nothing is downloaded here. On a machine with network access run

    tfds build cifar10_corrupted --data_dir=DIR

which builds all 95 configs from one 2.7 GiB download, copy DIR to this
machine and set ``config.eval.corruptions_data_dir=DIR`` (or
``config.data.data_dir``, which it defaults to when ``data.source='tfds'``).

Config (``config.eval``):

  corruptions             () or None: off. 'auto': the 15 common corruptions
                          if the data is prepared, else skipped with one INFO
                          line. 'all': the 15 common ones, required. A tuple of
                          names (common or extra): those, required.
  corruption_severities   a subset of (1, 2, 3, 4, 5).
  corruptions_data_dir    TFDS data_dir of ``cifar10_corrupted``; None:
                          ``data.data_dir`` when data.source='tfds', else TFDS's
                          default (~/tensorflow_datasets).

Preprocessing. Every set goes through ``data.eval_iterator`` with the clean
test set's ``config.data`` (only source, name and data_dir replaced, and the
clean set's evaluation crop pinned), so images reach the model exactly as the
clean test images do: float32 in [0, 1], NHWC, (32, 32, 3) unless
``data.image_size`` resizes them (ConvNeXt's 224).

Metrics, with E = 100 - accuracy (top-1 error in %) of a model f on corruption
c at severity s, and E_clean its clean test error:

  accuracy[c_s]      exact: correct / examples over the whole set (padding masked).
  per_corruption[c]  mean over the evaluated severities of accuracy[c_s].
  mean_accuracy      mean of accuracy[c_s] over the common corruptions and the
                     severities evaluated (over the extra ones when no common
                     one is evaluated); ``mean_over`` says which.
  mean_error         100 - mean_accuracy.
  CE_c               100 * sum_s E^f_{s,c} / sum_s E^base_{s,c}     (paper, Sec. 3)
  relative CE_c      100 * sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^base_{s,c} - E^base_clean)
  mCE, relative mCE  the means of CE_c and relative CE_c over the common corruptions.

The paper's baseline is AlexNet; ``relative_corruption_errors`` takes any
baseline's tables (e.g. the ``standard`` run, to score ERIEP against it).
"""

import math
import time
from typing import Any, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax import data
from eriep_jax import parallel

__all__ = ["COMMON_CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "TFDS_NAME",
           "corruption_sets", "check_corruptions", "corruption_sweep",
           "relative_corruption_errors"]

TFDS_NAME = "cifar10_corrupted"

# Hendrycks & Dietterich (2019), Fig. 1's order: noise, blur, weather, digital.
COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("gaussian_blur", "saturate", "spatter", "speckle_noise")
SEVERITIES = (1, 2, 3, 4, 5)

_ALL = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
# Paper name -> TFDS config prefix, where they differ.
_TFDS_CONFIG = {"glass_blur": "frosted_glass_blur", "elastic_transform": "elastic"}
_ALIASES = {tfds_name: name for name, tfds_name in _TFDS_CONFIG.items()}
_MODES = ("auto", "all")


# ----------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------


def _requested(config: ml_collections.ConfigDict) -> tuple[tuple[str, ...], tuple[int, ...], str]:
  """(corruptions, severities, mode) with mode 'off', 'auto' or 'required'; validates."""
  value = config.eval.get("corruptions", ())
  if value is None or (isinstance(value, (tuple, list)) and not value):
    names, mode = (), "off"
  elif value == "auto":
    names, mode = COMMON_CORRUPTIONS, "auto"
  elif value == "all":
    names, mode = COMMON_CORRUPTIONS, "required"
  elif isinstance(value, (str, tuple, list)):
    items = (value,) if isinstance(value, str) else tuple(value)
    names = []
    for item in items:
      name = _ALIASES.get(item, item) if isinstance(item, str) else item
      if name not in _ALL:
        raise ValueError(f"unknown corruption {item!r} in eval.corruptions; use 'auto', "
                         f"'all' or names from {_ALL}.")
      if name not in names:
        names.append(name)
    names, mode = tuple(names), "required"
  else:
    raise ValueError(f"eval.corruptions={value!r} must be (), None, 'auto', 'all' or a "
                     f"tuple of corruption names from {_ALL}.")

  severities = config.eval.get("corruption_severities", SEVERITIES)
  if (not isinstance(severities, (tuple, list)) or not severities
      or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s not in SEVERITIES
             for s in severities)):
    raise ValueError(f"eval.corruption_severities={severities!r} must be a non-empty tuple "
                     f"of severities from {SEVERITIES}.")
  severities = tuple(sorted({int(s) for s in severities}))

  data_dir = config.eval.get("corruptions_data_dir")
  if data_dir is not None and not isinstance(data_dir, str):
    raise ValueError(f"eval.corruptions_data_dir={data_dir!r} must be a folder path or None "
                     "(None: data.data_dir for TFDS data, else ~/tensorflow_datasets).")
  return names, severities, mode


def _data_dir(config: ml_collections.ConfigDict) -> str | None:
  data_dir = config.eval.get("corruptions_data_dir")
  if data_dir is None and config.data.source == "tfds":
    data_dir = config.data.get("data_dir")
  return data_dir


def _tfds_set(corruption: str, severity: int) -> str:
  return f"{TFDS_NAME}/{_TFDS_CONFIG.get(corruption, corruption)}_{severity}"


def _key(corruption: str, severity: int) -> str:
  return f"{corruption}_{severity}"


def _set_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """``config`` reading TFDS set ``name`` with the clean test set's eval preprocessing."""
  out = config.copy_and_resolve_references()
  with out.unlocked():
    # Pin the clean set's crop: 'auto' keys on the data set name.
    out.data.eval_crop = data.pipeline.eval_crop(config.data)
    out.data.source = "tfds"
    out.data.name = name
    out.data.data_dir = _data_dir(config)
  return out


def _first_missing(config: ml_collections.ConfigDict, plan: list[tuple[str, int, str]]
                   ) -> tuple[str, FileNotFoundError] | None:
  """(set, get_source's error) for the first set of ``plan`` not prepared, else None."""
  for _, _, name in plan:
    try:
      data.sources.get_source(_set_config(config, name).data)
    except FileNotFoundError as e:
      return name, e
  return None


def _plan(config: ml_collections.ConfigDict, *,
          auto_check: bool = True) -> list[tuple[str, int, str]]:
  """[(corruption, severity, TFDS set)] to evaluate; [] when off or 'auto' finds no data."""
  names, severities, mode = _requested(config)
  plan = [(c, s, _tfds_set(c, s)) for c in names for s in severities]
  if mode == "auto" and auto_check:
    missing = _first_missing(config, plan)
    if missing is not None:
      where = _data_dir(config) or "~/tensorflow_datasets"
      logging.info("CIFAR-10-C evaluation skipped (eval.corruptions='auto'): %r is not "
                   "prepared under data_dir=%r; to score it, run `tfds build %s "
                   "--data_dir=DIR` on a machine with network access (all 95 sets, one "
                   "2.7 GiB download), copy DIR here and set config.eval.corruptions_data_dir.",
                   missing[0], where, TFDS_NAME)
      return []
  return plan


def corruption_sets(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The TFDS sets ``cifar10_corrupted/<c>_<s>`` that ``config.eval`` asks for.

  Corruption-major, in ``COMMON_CORRUPTIONS`` / ``EXTRA_CORRUPTIONS`` order for
  'auto' and 'all' (the tuple's order otherwise), severities ascending. Only
  'auto' looks at the data (one prepared-check per set, stopping at the first
  missing one); 'all' and tuples are returned as asked (``check_corruptions``
  makes sure they exist).

  Args:
    config: the experiment config (``eval.corruptions``,
      ``eval.corruption_severities``, ``eval.corruptions_data_dir``).

  Returns:
    The set names; () when off, or for 'auto' when a set is not prepared (then
    one INFO line says how to prepare it).

  Raises:
    ValueError: for an unknown corruption name, a bad severity or a bad value type.
  """
  return tuple(name for _, _, name in _plan(config))


def check_corruptions(config: ml_collections.ConfigDict) -> None:
  """Checks the corruption config, and that every required set is prepared, before training.

  'auto' is only validated (it skips missing data when evaluating). For 'all'
  or a tuple, each set is opened through ``data.sources.get_source`` (no
  example is read), stopping at the first missing one.

  Raises:
    ValueError: for an unknown corruption name, a bad severity or a bad value type.
    FileNotFoundError: the sentence ``get_source`` gives for a TFDS set that is
      not prepared, naming the set and the data_dir, with how to build all 95 sets.
  """
  _, _, mode = _requested(config)
  if mode != "required":
    return
  missing = _first_missing(config, _plan(config, auto_check=False))
  if missing is not None:
    raise FileNotFoundError(
        f"{missing[1]}; for CIFAR-10-C, `tfds build {TFDS_NAME} --data_dir=DIR` builds all 95 "
        "sets from one 2.7 GiB download: then set config.eval.corruptions_data_dir=DIR, or "
        "eval.corruptions='auto' to skip them when absent") from missing[1]


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


_COUNT_STEPS = {}


def _count_step(model: Any):
  """The pmapped (correct, examples) step, cached so that every set shares one compile."""
  cache_key = (type(model), repr(model))
  if cache_key not in _COUNT_STEPS:
    def step(variables, batch):
      logits = model.apply(variables, batch["image"], train=False)
      valid = batch["mask"] > 0
      correct = jnp.sum((jnp.argmax(logits, -1) == batch["label"]) & valid, dtype=jnp.int32)
      return jax.lax.psum(jnp.stack([correct, jnp.sum(valid, dtype=jnp.int32)]),
                          parallel.AXIS_NAME)
    _COUNT_STEPS[cache_key] = jax.pmap(step, axis_name=parallel.AXIS_NAME)
  return _COUNT_STEPS[cache_key]


def _mean_over(corruptions: list[str]) -> list[str]:
  common = [c for c in corruptions if c in COMMON_CORRUPTIONS]
  return common or list(corruptions)


def corruption_sweep(config: ml_collections.ConfigDict, *, model: Any,
                     variables: Any) -> dict[str, Any]:
  """Exact top-1 accuracy of ``model`` on every CIFAR-10-C set that ``config.eval`` asks for.

  Each set's test split is read once through ``data.eval_iterator`` (batch
  ``config.eval_batch_size``, padding masked out), with the clean test set's
  preprocessing; one pmapped step serves every set.

  Args:
    config: the experiment config (data and eval blocks, ``eval_batch_size``).
    model: the classifier (inference mode is used).
    variables: ``{'params', 'batch_stats'?}`` on the host (unreplicated).

  Returns:
    ``{}`` when ``corruption_sets(config)`` is empty; else ``{'accuracy':
    {'<c>_<s>': %}, 'correct': {'<c>_<s>': int}, 'num_examples': {'<c>_<s>':
    int}, 'per_corruption': {c: mean % over severities}, 'mean_accuracy': %,
    'mean_error': 100 - mean_accuracy, 'mean_over': {'corruptions': [...],
    'severities': [...]}}`` (see the module docstring). Keys use the paper's
    corruption names.

  Raises:
    ValueError: for a bad corruption config (before any compute).
    FileNotFoundError: for a required set that is not prepared.
  """
  plan = _plan(config)
  if not plan:
    return {}
  check_corruptions(config)
  p_step = _count_step(model)
  rvars = parallel.replicate(variables)
  correct, counts, accuracy = {}, {}, {}
  corruptions = list(dict.fromkeys(c for c, _, _ in plan))
  severities = sorted({s for _, s, _ in plan})
  for corruption in corruptions:
    t0 = time.perf_counter()
    for c, s, name in plan:
      if c != corruption:
        continue
      totals = np.zeros(2, np.int64)
      for batch in data.eval_iterator(_set_config(config, name), "test",
                                      batch_size=config.eval_batch_size):
        batch = {k: batch[k] for k in ("image", "label", "mask")}
        totals += np.asarray(jax.device_get(p_step(rvars, batch)[0]), np.int64)
      key = _key(c, s)
      correct[key], counts[key] = int(totals[0]), int(totals[1])
      accuracy[key] = 100.0 * correct[key] / max(counts[key], 1)
    row = [accuracy[_key(corruption, s)] for s in severities]
    logging.info("CIFAR-10-C %s: %s%% (severities %s), %.0f s", corruption,
                 " / ".join(f"{a:.2f}" for a in row), severities, time.perf_counter() - t0)
  per_corruption = {c: float(np.mean([accuracy[_key(c, s)] for s in severities]))
                    for c in corruptions}
  over = _mean_over(corruptions)
  mean = float(np.mean([accuracy[_key(c, s)] for c in over for s in severities]))
  return {"accuracy": accuracy, "correct": correct, "num_examples": counts,
          "per_corruption": per_corruption, "mean_accuracy": mean,
          "mean_error": 100.0 - mean,
          "mean_over": {"corruptions": over, "severities": severities}}


# ----------------------------------------------------------------------------
# Corruption errors (Hendrycks & Dietterich, 2019, Sec. 3).
# ----------------------------------------------------------------------------


def _table(results: Mapping[str, Any], what: str) -> dict[str, dict[int, float]]:
  """{'<c>_<s>': %} (or a sweep's dict) -> {c: {s: accuracy}}."""
  acc = results["accuracy"] if "accuracy" in results else results
  table = {}
  for key, value in acc.items():
    corruption, _, severity = str(key).rpartition("_")
    if corruption not in _ALL or not severity.isdigit() or int(severity) not in SEVERITIES:
      raise ValueError(f"{what} has key {key!r}; use '<corruption>_<severity>' keys with a "
                       f"corruption of {_ALL} and a severity of {SEVERITIES}, as "
                       "corruption_sweep returns.")
    table.setdefault(corruption, {})[int(severity)] = float(value)
  if not table:
    raise ValueError(f"{what} has no accuracies; pass corruption_sweep's result.")
  return table


def _check_clean(value: Any, what: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
      or not 0.0 <= float(value) <= 100.0:
    raise ValueError(f"{what}={value!r} must be a clean test accuracy in percent, in [0, 100].")
  return float(value)


def _ratio(numerator: float, denominator: float) -> float:
  return 100.0 * numerator / denominator if denominator > 0 else math.nan


def relative_corruption_errors(results: Mapping[str, Any], clean_accuracy: float,
                               baseline_results: Mapping[str, Any],
                               baseline_clean_accuracy: float) -> dict[str, Any]:
  """Corruption errors of a model relative to a baseline (Hendrycks & Dietterich, 2019).

  With E = 100 - accuracy, for each corruption c of ``results``:
  ``ce[c] = 100 * sum_s E^f_{s,c} / sum_s E^base_{s,c}`` and
  ``rce[c] = 100 * sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^base_{s,c} - E^base_clean)``,
  summed over the severities of ``results``. A denominator <= 0 (a baseline
  with no error on c, or no more error than on clean images) gives NaN for
  that corruption, and then for the mean it enters.

  Args:
    results: the model's ``corruption_sweep`` result, or its ``'accuracy'`` table.
    clean_accuracy: the model's clean test accuracy (%).
    baseline_results: the baseline's, with at least the same corruptions and severities.
    baseline_clean_accuracy: the baseline's clean test accuracy (%).

  Returns:
    ``{'ce': {c: %}, 'mce': %, 'rce': {c: %}, 'relative_mce': %, 'mean_over':
    [corruptions]}``; the means are over the common corruptions of ``results``
    (over all of them when none is common).

  Raises:
    ValueError: for a malformed table, a clean accuracy outside [0, 100], or
      a set of ``results`` that the baseline lacks.
  """
  model = _table(results, "results")
  base = _table(baseline_results, "baseline_results")
  e_clean = 100.0 - _check_clean(clean_accuracy, "clean_accuracy")
  b_clean = 100.0 - _check_clean(baseline_clean_accuracy, "baseline_clean_accuracy")
  ce, rce = {}, {}
  for c in [c for c in _ALL if c in model]:
    missing = [_key(c, s) for s in model[c] if s not in base.get(c, {})]
    if missing:
      raise ValueError(f"baseline_results lacks {missing}; evaluate the baseline on the same "
                       "corruptions and severities.")
    e = np.array([100.0 - model[c][s] for s in sorted(model[c])])
    b = np.array([100.0 - base[c][s] for s in sorted(model[c])])
    ce[c] = _ratio(e.sum(), b.sum())
    rce[c] = _ratio((e - e_clean).sum(), (b - b_clean).sum())
  over = _mean_over(list(ce))
  return {"ce": ce, "mce": float(np.mean([ce[c] for c in over])),
          "rce": rce, "relative_mce": float(np.mean([rce[c] for c in over])),
          "mean_over": over}
