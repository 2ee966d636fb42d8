"""Robustness evaluation: clean, Table-2 perturbations and the Fig. 2 noise sweep.

``robustness_sweep`` runs one pass over the test split and scores every
perturbation of ``config.eval`` on every batch, with exact counts (padding is
masked out, so the denominator is the true test-set size). Randomness is
per example: image i of the split is perturbed with
``fold_in(fold_in(purpose_key(config.eval.seed, 'eval'), i), crc32(name))``, so the counts
do not depend on the batch size, the device count, the number of processes or
which other perturbations are scored.

Outputs of ``evaluate_and_write`` in ``<workdir>/eval``: ``results.json``,
``results.md`` (a markdown table) and ``noise_sweep.png`` (accuracy vs noise
std). ``write_comparison`` writes ``<workdir>/comparison.{json,md,png}`` for
several methods side by side.

matplotlib is imported inside `plot_noise_sweep`, so scoring needs no plotting library.
"""

import json
import os
import time
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax import data
from eriep_jax import parallel
from eriep_jax import rng
from eriep_jax.evaluate import corruptions
from eriep_jax.evaluate import gradcam
from eriep_jax.evaluate import perturbations

__all__ = ["eval_names", "robustness_sweep", "evaluate_and_write", "write_results",
           "markdown_table",
           "write_comparison", "plot_noise_sweep", "noise_name", "TABLE_COLUMNS"]

# The demo's and the README's table: Table 3's columns plus Fig. 3's noise level.
TABLE_COLUMNS = ("clean", "perturb1", "perturb2", "perturb3", "noise_0.2")


def noise_name(std: float) -> str:
  return f"noise_{float(std):g}"


def eval_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The perturbation names scored: ``eval.perturbations`` then the noise sweep."""
  names = list(config.eval.perturbations)
  names += [noise_name(s) for s in config.eval.noise_stds if noise_name(s) not in names]
  return tuple(names)


_EVAL_STEPS = {}


def _eval_step(model: Any, names: tuple[str, ...]):
  """The pmapped scoring step for ``names``, cached so that equal models share it.

  The noise levels run in one ``lax.scan`` over the std (one compiled forward
  pass for the whole sweep); every other perturbation has its own forward pass.
  """
  cache_key = (type(model), repr(model), names)
  if cache_key in _EVAL_STEPS:
    return _EVAL_STEPS[cache_key]
  fns = [perturbations.get_eval_perturbation(n) for n in names]   # validates every name
  noise = [i for i, n in enumerate(names) if n.startswith("noise_")]
  other = [i for i in range(len(names)) if i not in noise]
  stds = jnp.asarray([float(names[i][len("noise_"):]) for i in noise], jnp.float32)

  salts = [zlib.crc32(n.encode()) & 0x7FFFFFFF for n in names]

  def step(variables, batch, key):
    images, labels = batch["image"], batch["label"]
    mask = batch["mask"].astype(jnp.float32)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(batch["index"])

    def each(fn, salt):
      # One draw per example, from its own key.
      return jax.vmap(lambda x, k: fn(x[None], jax.random.fold_in(k, salt))[0])(images, keys)

    def count(x):
      logits = model.apply(variables, x, train=False)
      return jnp.sum((jnp.argmax(logits, -1) == labels) * mask)

    counts = [None] * len(names)
    for i in other:
      counts[i] = count(each(fns[i], salts[i]))
    if noise:
      def body(carry, inputs):
        std, salt = inputs
        return carry, count(each(
            lambda x, k: perturbations.gaussian_noise(x, k, std=std), salt))
      _, noise_counts = jax.lax.scan(
          body, None, (stds, jnp.asarray([salts[i] for i in noise], jnp.uint32)))
      for j, i in enumerate(noise):
        counts[i] = noise_counts[j]
    return jax.lax.psum(jnp.stack(counts + [jnp.sum(mask)]), "batch")

  _EVAL_STEPS[cache_key] = jax.pmap(step, axis_name="batch", in_axes=(0, 0, None))
  return _EVAL_STEPS[cache_key]


def robustness_sweep(config: ml_collections.ConfigDict, *, model: Any,
                     variables: Any, split: str = "test",
                     batches: Any = None) -> dict[str, Any]:
  """Accuracy of ``model`` under every perturbation of ``config.eval``.

  Args:
    config: the experiment config (data and eval blocks).
    model: the classifier (inference mode is used).
    variables: ``{'params', 'batch_stats'?}`` on the host (unreplicated).
    split: the split to evaluate.
    batches: batches as ``data.eval_iterator`` yields them (``image``,
      ``label``, ``mask``, ``index``, each with a leading device axis), in
      place of reading ``split`` (an in-memory test set, e.g. on a machine
      without TensorFlow). Their ``index`` keys the perturbations as above.

  Returns:
    ``{'num_examples': int, 'correct': {name: int}, 'accuracy': {name: float}}``
    with accuracies in percent, for every name of ``eval_names(config)``.

  Raises:
    ValueError: for an unknown perturbation name (before any compute).
  """
  names = eval_names(config)
  p_step = _eval_step(model, names)
  rvars = parallel.replicate(variables)
  base = rng.purpose_key(int(config.eval.seed), "eval")
  totals = np.zeros(len(names) + 1, np.float64)
  if batches is None:
    batches = data.eval_iterator(config, split, batch_size=config.eval_batch_size)
  for batch in batches:
    batch = {k: batch[k] for k in ("image", "label", "mask", "index")}
    totals += np.asarray(jax.device_get(p_step(rvars, batch, base)[0]), np.float64)
  n = int(round(totals[-1]))
  correct = {name: int(round(c)) for name, c in zip(names, totals[:-1])}
  return {"num_examples": n, "correct": correct,
          "accuracy": {k: 100.0 * v / max(n, 1) for k, v in correct.items()}}


def markdown_table(rows: dict[str, dict[str, float]],
                   columns: Sequence[str] = TABLE_COLUMNS) -> str:
  """A markdown table: one row per key of ``rows``, accuracy (%) per column."""
  header = "| method | " + " | ".join(columns) + " |"
  rule = "|---|" + "---:|" * len(columns)
  lines = [header, rule]
  for name, acc in rows.items():
    cells = [f"{acc[c]:.2f}" if c in acc else "-" for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_noise_sweep(rows: dict[str, dict[str, float]], stds: Sequence[float],
                     path: str, *, title: str = "") -> None:
  """Accuracy vs Gaussian-noise std (Fig. 2), one line per row."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name, acc in rows.items():
    ax.plot(list(stds), [acc[noise_name(s)] for s in stds], marker="o", label=name)
  ax.set_xlabel("Gaussian noise std")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def evaluate_and_write(config: ml_collections.ConfigDict, workdir: str, *, model: Any,
                       variables: Any, step: int | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
  """Runs ``robustness_sweep`` and writes ``workdir/eval/results.{json,md}`` and the plot.

  ``results.json`` is written last and atomically (a rename), so its presence
  marks a finished run. With several processes only process 0 writes.

  Args:
    config: the run's config.
    workdir: the run's workdir.
    model: the classifier.
    variables: its variables on the host.
    step: the trained step, recorded.
    extra: more JSON-able fields for ``results.json`` (seed, training means, ...).
      The scores (``accuracy``, ``cam_stability`` when ``eval.cam_stability``,
      ``corruptions`` when ``eval.corruptions`` selects CIFAR-10-C sets)
      replace any of the same name in ``extra``.

  Returns:
    The results dict (as written to ``results.json``).
  """
  t0 = time.perf_counter()
  sweep = robustness_sweep(config, model=model, variables=variables)
  if config.eval.get("cam_stability", False):
    sweep["cam_stability"] = gradcam.cam_stability(config, model=model, variables=variables)
  c10c = corruptions.corruption_sweep(config, model=model, variables=variables)
  if c10c:   # {} when eval.corruptions is off (or 'auto' without the data)
    sweep["corruptions"] = c10c
  results = {
      "method": config.method, "reference": config.reference, "model": config.model.name,
      "width": config.model.width, "dataset": f"{config.data.source}:{config.data.name}",
      "step": step, "alpha": config.alpha, "sync_freq": config.sync_freq,
      # extra wins: a re-evaluation (--mode=eval) keeps the run's original record.
      "eval_wall_time_s": time.perf_counter() - t0, **(extra or {}), **sweep,
  }
  if jax.process_index() == 0:   # every process has the same totals; one writes them
    write_results(config, workdir, results)
  return results


def write_results(config: ml_collections.ConfigDict, workdir: str,
                  results: dict[str, Any]) -> None:
  """Writes ``workdir/eval/results.{md,json}`` and the plot; the JSON last, atomically."""
  out = os.path.join(workdir, "eval")
  os.makedirs(out, exist_ok=True)
  sweep = results
  step = results.get("step")
  columns = eval_names(config)
  table = markdown_table({config.method: sweep["accuracy"]}, columns)
  with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"Test accuracy (%) of {config.model.name} trained with `{config.method}`, "
            f"{sweep['num_examples']} test images, step {step}.\n\n{table}\n")
  stds = list(config.eval.noise_stds)
  if len(stds) > 1 and config.get("write_plots", True):
    plot_noise_sweep({config.method: sweep["accuracy"]}, stds,
                     os.path.join(out, "noise_sweep.png"), title=config.model.name)
  tmp = os.path.join(out, "results.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  os.replace(tmp, os.path.join(out, "results.json"))


def write_comparison(config: ml_collections.ConfigDict, workdir: str,
                     results: dict[str, dict[str, Any]]) -> str:
  """Writes ``workdir/comparison.{json,md,png}`` for several methods; returns the table."""
  rows = {m: r["accuracy"] for m, r in results.items()}
  table = markdown_table(rows, TABLE_COLUMNS)
  n = next(iter(results.values()))["num_examples"]
  with open(os.path.join(workdir, "comparison.json"), "w", encoding="utf-8") as f:
    json.dump({"columns": list(TABLE_COLUMNS), "num_examples": n, "results": results}, f,
              indent=2)
  with open(os.path.join(workdir, "comparison.md"), "w", encoding="utf-8") as f:
    f.write(f"Test accuracy (%), {config.model.name} on {config.data.source}:{config.data.name}, "
            f"{n} test images.\n\n{table}\n")
  stds = list(config.eval.noise_stds)
  if len(stds) > 1 and config.get("write_plots", True):
    plot_noise_sweep(rows, stds, os.path.join(workdir, "comparison_noise.png"),
                     title=config.model.name)
  return table
