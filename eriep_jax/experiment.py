r"""The whole job: search -> train every method and seed -> evaluate -> report.

This is the one module that imports both ``train`` and ``evaluate``;
``launch.py`` calls it::

  results = run(config, workdir)             # --mode=train: Algorithm 1 end to end
  results = evaluate_workdir(config, workdir)  # --mode=eval: re-score trained runs
  report = build_report(config, workdir)     # --mode=report
  panel = gradcam_workdir(config, workdir)   # --mode=gradcam: Fig. 4 and CAM stability
  trained = restore(workdir)                 # a trained run, for a notebook

Variants. ``config.compare_methods`` lists what to train, each a method name
with optional modifiers joined by ``_``: ``standard``, ``eriep``, ``augment``,
``eriep_live`` (``reference='live'``), ``eriep_random`` / ``augment_random``
(``policy.source='random'``), ``eriep_init`` (``policy.source='init'``),
``eriep_live_fixedpolicy`` (``update_policy=False``: the EPM stays as it came
in, a studied reading) and ``oracle`` (the positive control: trains on the
evaluation's own perturbations; not a method of the paper).
Empty: ``config.method`` alone.

Seeds. ``config.seeds = (0, 1, 2)`` trains each variant once per seed into
``<workdir>/<variant>/seed_<k>`` (the seed sets N's initialisation, the data
order and the EPM's draws). Without seeds, a comparison trains into
``<workdir>/<variant>`` and a single method into ``<workdir>`` itself.

Policies. Every variant starts from the policy that its ``policy.source``
names, prepared once for the whole sweep: ``'search'`` runs stage 1 into
``<workdir>/search`` (a finished search, one with a ``policy_params.json``,
is reused, never redone), ``'random'`` writes ``<workdir>/random_policy``,
``'init'`` is the untrained initial policy and any other string is a path.

A rerun skips every run whose ``eval/results.json`` exists and resumes the
others from their checkpoints.
"""

import copy
import functools
import json
import os
import pathlib
import subprocess
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from eriep_jax import data
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax import search
from eriep_jax.policy import files as policy_files
from eriep_jax.evaluate import perturbations as perturbations_lib
from eriep_jax.evaluate import report as report_lib
from eriep_jax.evaluate import robustness
from eriep_jax.train import loop
# Re-exported: the run-folder layout (study), the re-scoring modes (rescore), and restore,
# which lives with the checkpoints.
from eriep_jax.rescore import evaluate_workdir, gradcam_workdir  # noqa: F401
from eriep_jax.study import (FINAL_POLICY_GRID, GRADCAM_DIR, INITIAL_POLICY,  # noqa: F401
                             MODIFIERS, RANDOM_POLICY_DIR, RESULTS_FILE, SUPCON_ENCODER_DIR,
                             build_report, check_job, load_results, parse_variant, run_dirs,
                             job_seeds, job_variants, summarize_job, variant_config)
from eriep_jax.train.restore import RUN_SEARCH_DEPTH, Run, has_checkpoint, restore  # noqa: F401
from eriep_jax.train.restore import trained_runs_below

__all__ = ["MODIFIERS", "Run", "parse_variant", "variant_config", "run_dirs", "restore",
           "prepare_policy", "train_and_evaluate", "run", "evaluate_workdir", "build_report",
           "trained_runs_below",
           "gradcam_workdir",
           "RESULTS_FILE", "RANDOM_POLICY_DIR"]


# --- Policies ---------------------------------------------------------------------------


def prepare_policy(config: ml_collections.ConfigDict, workdir: str) -> policy_lib.PolicyParams:
  """The policy that ``config.policy.source`` names, prepared once per job workdir.

  Args:
    config: a run's config (one variant).
    workdir: the job's workdir (the sweep's, not the run's).

  Returns:
    The stage-2 initial :class:`~eriep_jax.policy.PolicyParams`.
  """
  def search_once():   # a finished search in this workdir is reused, not redone
    directory = os.path.join(workdir, "search")
    if search.is_finished(directory):
      print(f"reusing the finished stage-1 search in {directory}", flush=True)
      return search.load_policy(directory, config)
    return search.run_search(config, directory)

  params = policy_files.resolve_source(config, rng.purpose_key(int(config.seed), "policy"),
                                       run_search=search_once)
  directory = pathlib.Path(workdir) / RANDOM_POLICY_DIR
  if config.policy.source == "random" and not (directory / search.PARAMS_JSON).is_file():
    # The random control's files, once per job: its grid beside the searched policy's.
    images = next(iter(data.eval_iterator(config, "test", batch_size=jax.local_device_count()
                                          * 8)))["image"]
    images = jax.device_get(images).reshape((-1,) + tuple(images.shape[2:]))[:8]
    search.save_policy(params, directory, images=images,
                       key=rng.purpose_key(int(config.policy.get("seed", 0)), "policy"))
  return params


# --- One run -------------------------------------------------------------------------------


GIT_COMMIT_ENV = "ERIEP_JAX_GIT_COMMIT"


def _git_commit() -> str:
  """The code's commit for each run's record: ``$ERIEP_JAX_GIT_COMMIT`` if set (a machine whose
  copy of the repository has stale or no git metadata, such as the project's GPU machine),
  else ``git rev-parse HEAD`` beside this file, else 'unknown'."""
  if os.environ.get(GIT_COMMIT_ENV):
    return os.environ[GIT_COMMIT_ENV]
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(__file__),
                         capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"


_MEAN_KEYS = ("l_n", "l_r", "gap", "frac_ln_gt_lr", "loss", "accuracy")
_DRIFT_KEYS = ("selected_probability", "selected_magnitude")


def training_summary(history: list[dict[str, float]]) -> dict[str, Any]:
  """Means over the whole run's logged windows, and the EPM's drift series."""
  means = {}
  for k in _MEAN_KEYS:
    values = [h[k] for h in history if k in h]
    if values:
      means[f"mean_{k}"] = float(sum(values) / len(values))
  drift = [{k: v for k, v in h.items() if k == "step" or k in _DRIFT_KEYS
            or k.startswith("entropy_stage")} for h in history]
  return {"training": means, "policy_drift": drift}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       initial_policy: policy_lib.PolicyParams | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains one run, then evaluates it into ``workdir/eval/results.json``.

  ``method='supcon'`` trains its two stages one after the other: the SupCon
  encoder into ``workdir/encoder``, then the linear classifier on the frozen
  encoder into ``workdir`` (each resumable); the classifier is scored.

  The results record the seed, the method, the policy source, the git commit,
  the jax version, the wall time, the means of L_N, L_R, |L_N - L_R| and
  frac(L_N > L_R) over training, the EPM's drift (entropy per stage, mean p
  and mu of the selected ops) and the final discretised policy.
  """
  if initial_policy is not None and jax.process_index() == 0 and \
      not os.path.isfile(os.path.join(workdir, INITIAL_POLICY)):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, INITIAL_POLICY), "w", encoding="utf-8") as f:
      f.write(policy_lib.discretize(initial_policy).to_json())
  initial_variables, encoder_record = None, None
  if config.method == "supcon":   # the contrastive stage, then the linear classifier
    enc_config = supcon_stage_config(config, "encoder")
    enc_dir = os.path.join(workdir, SUPCON_ENCODER_DIR)
    enc = loop.train(enc_config, enc_dir, initial_policy=initial_policy)
    if not enc.finished:
      logging.warning("supcon's encoder stage stopped at step %d; rerun to resume.", enc.step)
      return {"finished": False, "step": enc.step, "stage": "encoder"}
    initial_variables = {"params": enc.state.params, "batch_stats": enc.state.batch_stats}
    enc_history = loop.read_history(os.path.join(enc_dir, loop.HISTORY_FILE), enc.step)
    encoder_record = {"num_train_steps": int(enc.step), "num_epochs": enc_config.num_epochs,
                      "train_wall_time_s": enc.wall_time_s,
                      **training_summary(enc_history)["training"]}
    config = supcon_stage_config(config, "linear")
  oracle_fn = None
  if config.method == "oracle":
    oracle_fn = functools.partial(perturbations_lib.oracle,
                                  max_noise_std=float(config.oracle.max_noise_std))
  out = loop.train(config, workdir, initial_policy=initial_policy,
                   initial_variables=initial_variables, oracle_fn=oracle_fn)
  if not out.finished:
    logging.warning("training stopped at step %d before the end; rerun to resume.", out.step)
    return {"finished": False, "step": out.step}
  variables = {"params": out.state.params}
  if out.state.batch_stats:
    variables["batch_stats"] = out.state.batch_stats
  history = loop.read_history(os.path.join(workdir, loop.HISTORY_FILE), out.step)
  initial = os.path.join(workdir, INITIAL_POLICY)
  if os.path.isfile(initial):
    with open(initial, encoding="utf-8") as f:
      extra = dict(extra or {}, initial_policy=json.load(f))
  record = {
      "seed": int(config.seed), "policy_source": config.policy.source,
      "git_commit": _git_commit(), "jax_version": jax.__version__,
      "num_devices": jax.device_count(), "train_wall_time_s": out.wall_time_s,
      "protocol": {"batch_size": int(config.batch_size), "num_epochs": config.num_epochs,
                   "num_train_steps": int(out.step), "optimizer": config.optimizer.name,
                   "learning_rate": float(config.optimizer.learning_rate),
                   "train_augment": config.data.train_augment},
      **training_summary(history),
      "final_policy": json.loads(policy_lib.discretize(out.state.policy_params).to_json()),
      **(extra or {}),
  }
  if encoder_record is not None:
    record["supcon_encoder"] = encoder_record
    record["train_wall_time_s"] = out.wall_time_s + encoder_record["train_wall_time_s"]
  record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
  if config.method == "eriep" and config.get("update_policy", True):
    _save_final_grid(config, workdir, out.state.policy_params)
  return robustness.evaluate_and_write(config, workdir, model=out.model, variables=variables,
                                       step=out.step, extra=record)


def _save_final_grid(config: ml_collections.ConfigDict, workdir: str, params: Any) -> None:
  """The EPM after stage 2 as a grid PNG, on the first 8 test images (a visual of its drift).

  Skipped without matplotlib (`report.can_plot`).

  The images and the key are the same for every run of a sweep, so the grids
  of two variants differ only by their policies.
  """
  if not report_lib.can_plot():
    return
  try:
    batch = next(iter(data.eval_iterator(config, "test", batch_size=jax.device_count() * 8)))
  except StopIteration:
    return
  images = np.asarray(batch["image"]).reshape((-1,) + tuple(batch["image"].shape[2:]))[:8]
  policy_lib.save_grid(jax.device_get(params), images, os.path.join(workdir, FINAL_POLICY_GRID),
                       rng.purpose_key(0, "grid"))


def supcon_stage_config(config: ml_collections.ConfigDict,
                        stage: str) -> ml_collections.ConfigDict:
  """supcon's config for one stage: ``'encoder'`` (the SupCon loss, ``num_epochs``) or
  ``'linear'`` (the classifier on the frozen encoder, ``supcon.linear_epochs``)."""
  sub = copy.deepcopy(config)
  with sub.unlocked():
    sub.supcon.stage = stage
    if stage == "linear" and sub.supcon.linear_epochs > 0 and sub.num_train_steps <= 0:
      sub.num_epochs = sub.supcon.linear_epochs
  return sub


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=train``: Algorithm 1 end to end for every variant and seed.

  Prepares each policy source once (the stage-1 search first, when a variant
  uses it), then trains and evaluates every run that has no results yet,
  seed by seed. A comparison without seeds prints and writes
  ``comparison.{json,md}``; a seeded sweep builds the report when every run
  is done.

  Returns:
    ``{run workdir: results}``; an unfinished run (preempted) ends the job
    with ``{'finished': False, ...}`` as its entry.
  """
  check_job(config)
  runs = run_dirs(config, workdir)
  policies = {}
  results = {}
  for variant, seed, rundir in runs:
    sub = variant_config(config, variant, seed if job_seeds(config) else None)
    done = load_results(rundir)
    if done is not None:
      print(f"skipping {variant} (seed {seed}): {RESULTS_FILE} exists", flush=True)
      results[rundir] = done
      continue
    resuming = has_checkpoint(rundir)
    policy = None
    if not resuming:
      source = sub.policy.source
      if source not in policies:
        policies[source] = prepare_policy(sub, workdir)
      policy = policies[source]
    results[rundir] = train_and_evaluate(sub, rundir, initial_policy=policy,
                                         extra={"variant": variant})
    if not results[rundir].get("finished", True):
      return results
  summarize_job(config, workdir, runs, results)
  return results


# --- Trained runs ------------------------------------------------------------------------


# --- Grad-CAM (Fig. 4) -------------------------------------------------------------------


