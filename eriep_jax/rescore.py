"""The re-scoring modes of trained runs: ``--mode=eval`` (``evaluate_workdir``) and
``--mode=gradcam`` (``gradcam_workdir``: Fig. 4's panel and every run's CAM-stability score).

Each run is opened with ``restore`` (its own model and policy); the folders come from
``study``, as the job's do.
"""

import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax import data
from eriep_jax.evaluate import gradcam as gradcam_lib
from eriep_jax.evaluate import report as report_lib
from eriep_jax.evaluate import robustness
from eriep_jax.study import (GRADCAM_DIR, RESULTS_FILE, build_report, check_job, load_results,
                             job_seeds, run_dirs, summarize_job, update_results,
                             variant_config)
from eriep_jax.train.restore import has_checkpoint, restore

__all__ = ["evaluate_workdir", "gradcam_workdir"]


_SWEEP_FIELDS = ("num_examples", "correct", "accuracy")


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=eval``: re-scores every trained run of the job with ``config.eval``.

  Each run is opened with :func:`restore` (its own model and policy, whatever
  ``config.policy`` says); its training record is kept, its scores rewritten.

  Raises:
    ValueError: if a run has no checkpoint (one sentence, before any compute).
  """
  check_job(config)
  runs = run_dirs(config, workdir)
  for _, _, rundir in runs:
    if not os.path.isdir(os.path.join(rundir, "checkpoints")):
      raise ValueError(f"{rundir} has no checkpoint to evaluate; train first with "
                       "--mode=train or point --workdir at a trained run.")
  results = {}
  for variant, seed, rundir in runs:
    trained = restore(rundir)
    sub = variant_config(config, variant, seed if job_seeds(config) else None)
    old = load_results(rundir) or {}
    extra = {k: v for k, v in old.items() if k not in _SWEEP_FIELDS}
    results[rundir] = robustness.evaluate_and_write(sub, rundir, model=trained.model,
                                                    variables=trained.variables,
                                                    step=trained.step, extra=extra)
  summarize_job(config, workdir, runs, results)
  return results


def _panel_images(config, indices) -> tuple[Any, Any]:
  """The test images and labels at ``indices`` (one pass over the split)."""
  want = {int(i): k for k, i in enumerate(indices)}
  images, labels = [None] * len(want), [None] * len(want)
  for batch in data.eval_iterator(config, "test", batch_size=config.eval_batch_size):
    host = jax.device_get({k: batch[k] for k in ("image", "label", "index", "mask")})
    flat = {k: np.reshape(v, (-1,) + v.shape[2:]) for k, v in host.items()}
    for j, i in enumerate(flat["index"]):
      if flat["mask"][j] > 0 and int(i) in want:
        images[want[int(i)]] = flat["image"][j]
        labels[want[int(i)]] = int(flat["label"][j])
    if all(x is not None for x in images):
      break
  return np.stack(images), np.asarray(labels, np.int32)


def gradcam_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=gradcam``: the Fig. 4 panel and every trained run's CAM-stability score.

  Works on a trained comparison workdir with a ``standard`` run and an ERIEP
  run (``config.gradcam.method``, default ``'eriep'``), seeded or not. It opens
  every run with :func:`restore`, the call a notebook makes, and

  * writes ``<workdir>/gradcam/fig4_panel.png``: for ``gradcam.num_images``
    test images spread evenly over the split (a fixed choice), the original,
    the standard model's CAM on it, the blurred image, ERIEP's CAM on the
    blurred image and the standard model's CAM on the blurred image;
  * scores every finished run (one with ``eval/results.json``) with
    :func:`eriep_jax.evaluate.gradcam.cam_stability` over the whole test
    split, adds ``cam_stability`` to its ``results.json`` and writes all
    scores to ``<workdir>/gradcam/cam_stability.json``; a seeded sweep's
    report is rebuilt, so its CAM section and verdict follow.

  Raises:
    ValueError: the workdir lacks a trained standard or ERIEP run at the
      panel's seed (one sentence naming what to train), before any compute.
  """
  check_job(config)
  g = gradcam_lib.check_gradcam_config(config)
  method = g.get("method", "eriep")
  runs = run_dirs(config, workdir)
  trained = [(v, s, d) for v, s, d in runs if has_checkpoint(d)]
  seeds = job_seeds(config)
  seed = int(g.get("seed", -1))
  if seed < 0:
    seed = seeds[0] if seeds else int(config.seed)
  pair = {}
  for want in ("standard", method):
    match = [d for v, s, d in trained if v == want and s == seed]
    if not match:
      listed = sorted({v for v, _, _ in trained})
      raise ValueError(f"{workdir!r} has no trained {want!r} run at seed {seed} (trained: "
                       f"{listed or 'none'}); train it first with compare_methods including "
                       f"{want!r}, or set --config.gradcam.method/--config.gradcam.seed.")
    pair[want] = match[0]
  out_dir = os.path.join(workdir, GRADCAM_DIR)
  os.makedirs(out_dir, exist_ok=True)

  # The panel.
  info = data.get_dataset_info(config)
  num = int(g.get("num_images", 8))
  if not 1 <= num <= info.num_test:
    raise ValueError(f"gradcam.num_images={num} must be between 1 and the test split's "
                     f"{info.num_test} images.")
  indices = np.unique(np.linspace(0, info.num_test - 1, num).round().astype(int))
  images, labels = _panel_images(config, indices)
  radius = float(g.get("blur_radius_224", 9.0))
  blurred = np.asarray(gradcam_lib.fig4_blur(images, radius_224=radius))
  target = g.get("target", "label")
  opened = {k: restore(d) for k, d in pair.items()}
  preds = {}
  cams = {}
  for k, r in opened.items():
    for name, x in (("clean", images), ("blur", blurred)):
      preds[f"{k}_{name}"] = np.asarray(jnp.argmax(r.model.apply(r.variables, x), axis=-1))
      cams[f"{k}_{name}"] = np.asarray(gradcam_lib.grad_cam(
          r.model, r.variables, x, labels if target == "label" else None))
  sigma = gradcam_lib.blur_sigma(images.shape[1], radius)
  label_word = "true class" if target == "label" else "predicted class"
  names = info.class_names
  rows = [f"{names[y]}\nstd {names[preds['standard_blur'][i]]} / "
          f"{method} {names[preds[method + '_blur'][i]]}" for i, y in enumerate(labels)]
  panel = os.path.join(out_dir, "fig4_panel.png")
  if jax.process_index() == 0:
    gradcam_lib.plot_panel(
        images, blurred, {"standard_clean": cams["standard_clean"],
                          "eriep_blur": cams[f"{method}_blur"],
                          "standard_blur": cams["standard_blur"]}, panel,
        titles=("original", "standard: CAM", f"blurred (sigma {sigma:.2f} px)",
                f"{method}: CAM, blurred", "standard: CAM, blurred"),
        row_labels=rows,
        suptitle=(f"Fig. 4 on {info.name} test images {indices.tolist()} (seed {seed})\n"
                  f"CAM of the {label_word}; row labels: class, then the predictions on the "
                  "blurred image"))

  # The score, for every finished run (an unfinished one may still be training).
  scores = {}
  for variant, s, rundir in trained:
    if load_results(rundir) is None:
      logging.info("not scoring %s (seed %d): it has no %s yet", variant, s, RESULTS_FILE)
      continue
    sub = variant_config(config, variant, s if seeds else None)
    r = opened.get(variant) if s == seed and variant in opened else restore(rundir)
    t0 = time.perf_counter()
    score = gradcam_lib.cam_stability(sub, model=r.model, variables=r.variables)
    score["wall_time_s"] = time.perf_counter() - t0
    logging.info("CAM stability of %s (seed %d): Pearson %.3f, top-20%% IoU %.3f",
                 variant, s, score["pearson"], score["top20_iou"])
    scores[os.path.relpath(rundir, workdir)] = {"variant": variant, "seed": s, **score}
    if jax.process_index() == 0:
      update_results(rundir, cam_stability=score)
  summary = {"panel": os.path.relpath(panel, workdir), "panel_seed": seed,
             "panel_indices": indices.tolist(), "runs": scores}
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, "cam_stability.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
    if seeds and report_lib.collect(workdir):
      build_report(config, workdir)
  return summary
