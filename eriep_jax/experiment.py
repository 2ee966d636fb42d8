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
import jax.numpy as jnp
import ml_collections
import numpy as np

from eriep_jax import config_checks
from eriep_jax import data
from eriep_jax import policy as policy_lib
from eriep_jax import rng
from eriep_jax import search
from eriep_jax.policy import files as policy_files
from eriep_jax.evaluate import corruptions as corruptions_lib
from eriep_jax.evaluate import gradcam as gradcam_lib
from eriep_jax.evaluate import perturbations as perturbations_lib
from eriep_jax.evaluate import report as report_lib
from eriep_jax.evaluate import robustness
from eriep_jax.train import loop
from eriep_jax.train import step as step_lib
# Re-exported: eriep_jax.restore and the run folders' helpers live with the checkpoints.
from eriep_jax.train.restore import RUN_SEARCH_DEPTH, Run, has_checkpoint, restore  # noqa: F401
from eriep_jax.train.restore import trained_runs_below

__all__ = ["MODIFIERS", "Run", "parse_variant", "variant_config", "run_dirs", "restore",
           "prepare_policy", "train_and_evaluate", "run", "evaluate_workdir", "build_report",
           "trained_runs_below",
           "gradcam_workdir",
           "RESULTS_FILE", "RANDOM_POLICY_DIR"]

RESULTS_FILE = os.path.join("eval", "results.json")
RANDOM_POLICY_DIR = "random_policy"
SUPCON_ENCODER_DIR = "encoder"   # supcon's contrastive stage, inside its run's workdir
INITIAL_POLICY = "initial_policy.json"   # the run's starting policy, discretised
FINAL_POLICY_GRID = "final_policy_grid.png"   # what the EPM became in stage 2 (eriep runs)

# modifier -> (config field, value)
MODIFIERS = {
    "live": ("reference", "live"),
    "frozen": ("reference", "frozen"),
    "random": ("policy.source", "random"),
    "init": ("policy.source", "init"),
    "search": ("policy.source", "search"),
    "fixedpolicy": ("update_policy", False),
}


def parse_variant(name: str) -> tuple[str, dict[str, str]]:
  """``'eriep_live'`` -> ``('eriep', {'reference': 'live'})``.

  Raises:
    ValueError: for an unknown method or modifier.
  """
  parts = str(name).split("_")
  if parts[0] not in step_lib.METHODS:
    raise ValueError(f"unknown method {parts[0]!r} in {name!r}; use one of {step_lib.METHODS}, "
                     f"optionally with modifiers from {tuple(MODIFIERS)} (e.g. 'eriep_random').")
  overrides = {}
  for mod in parts[1:]:
    if mod not in MODIFIERS:
      raise ValueError(f"unknown modifier {mod!r} in {name!r}; use modifiers from "
                       f"{tuple(MODIFIERS)}, e.g. 'eriep_live' or 'augment_random'.")
    field, value = MODIFIERS[mod]
    overrides[field] = value
  return parts[0], overrides


def variant_config(config: ml_collections.ConfigDict, variant: str,
                   seed: int | None = None) -> ml_collections.ConfigDict:
  """The config of one run: ``variant`` applied, ``seed`` set, no sweep fields."""
  method, overrides = parse_variant(variant)
  sub = copy.deepcopy(config)
  with sub.unlocked():
    sub.method = method
    for field, value in overrides.items():
      node = sub
      *path, last = field.split(".")
      for p in path:
        node = node[p]
      node[last] = value
    sub.compare_methods = ()
    sub.seeds = ()
    if seed is not None:
      sub.seed = int(seed)
  return sub


def _variants(config) -> tuple[str, ...]:
  return tuple(config.get("compare_methods", ()) or ()) or (config.method,)


def _seeds(config) -> tuple[int, ...]:
  return tuple(int(s) for s in (config.get("seeds", ()) or ()))


def run_dirs(config: ml_collections.ConfigDict, workdir: str) -> list[tuple[str, int, str]]:
  """``(variant, seed, run workdir)`` for every run of the job, seed-major."""
  seeds, compare = _seeds(config), tuple(config.get("compare_methods", ()) or ())
  if not seeds:
    if not compare:
      return [(config.method, int(config.seed), workdir)]
    return [(v, int(config.seed), os.path.join(workdir, v)) for v in compare]
  return [(v, s, os.path.join(workdir, v, f"seed_{s}")) for s in seeds for v in _variants(config)]


def _check(config) -> None:
  """Every run's config, before any compute."""
  seeds = config.get("seeds", ()) or ()
  for s in seeds:
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
      raise ValueError(f"config.seeds={tuple(seeds)!r} must hold non-negative ints, e.g. "
                       "(0, 1, 2).")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds={tuple(seeds)!r} lists a seed twice; give each once.")
  variants = _variants(config)
  if len(set(variants)) != len(variants):
    raise ValueError(f"compare_methods={variants!r} lists a variant twice; give each once.")
  for v in variants:
    config_checks.check_config(variant_config(config, v))
  # CIFAR-10-C: a selected set that is not prepared fails here, before any training.
  corruptions_lib.check_corruptions(config)


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


def _load_results(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


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
  _check(config)
  runs = run_dirs(config, workdir)
  policies = {}
  results = {}
  for variant, seed, rundir in runs:
    sub = variant_config(config, variant, seed if _seeds(config) else None)
    done = _load_results(rundir)
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
  _summarize(config, workdir, runs, results)
  return results


def _summarize(config, workdir, runs, results) -> None:
  """The end of a job: the report (seeded sweeps) or the one-seed comparison table."""
  if _seeds(config):
    if jax.process_index() == 0:   # it reads the files that process 0 wrote
      print(build_report(config, workdir)["markdown"], flush=True)
  elif config.get("compare_methods"):
    table = robustness.write_comparison(config, workdir,
                                        {v: results[d] for v, _, d in runs})
    print(table, flush=True)
    print(f"One seed ({config.seed}): one run per method cannot tell a real difference from "
          "seed noise. Set config.seeds for intervals; the seeded CIFAR-10 studies are in "
          "results/cifar10_cpu/ and results/cifar10_cpu_v1/ of the repository.", flush=True)


# --- Trained runs ------------------------------------------------------------------------


_SWEEP_FIELDS = ("num_examples", "correct", "accuracy")


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=eval``: re-scores every trained run of the job with ``config.eval``.

  Each run is opened with :func:`restore` (its own model and policy, whatever
  ``config.policy`` says); its training record is kept, its scores rewritten.

  Raises:
    ValueError: if a run has no checkpoint (one sentence, before any compute).
  """
  _check(config)
  runs = run_dirs(config, workdir)
  for _, _, rundir in runs:
    if not os.path.isdir(os.path.join(rundir, "checkpoints")):
      raise ValueError(f"{rundir} has no checkpoint to evaluate; train first with "
                       "--mode=train or point --workdir at a trained run.")
  results = {}
  for variant, seed, rundir in runs:
    trained = restore(rundir)
    sub = variant_config(config, variant, seed if _seeds(config) else None)
    old = _load_results(rundir) or {}
    extra = {k: v for k, v in old.items() if k not in _SWEEP_FIELDS}
    results[rundir] = robustness.evaluate_and_write(sub, rundir, model=trained.model,
                                                    variables=trained.variables,
                                                    step=trained.step, extra=extra)
  _summarize(config, workdir, runs, results)
  return results


def build_report(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=report``: ``<workdir>/report/`` from every finished run below the workdir.

  Raises:
    ValueError: if no run below the workdir has finished (says what to run).
  """
  return report_lib.write_report(workdir, config=config)


# --- Grad-CAM (Fig. 4) -------------------------------------------------------------------

GRADCAM_DIR = "gradcam"


def _update_results(rundir: str, **fields: Any) -> bool:
  """Adds ``fields`` to a finished run's ``results.json`` (atomically); False if none."""
  path = os.path.join(rundir, RESULTS_FILE)
  old = _load_results(rundir)
  if old is None:
    return False
  old.update(fields)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(old, f, indent=2)
  os.replace(tmp, path)
  return True


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
  _check(config)
  g = gradcam_lib.check_gradcam_config(config)
  method = g.get("method", "eriep")
  runs = run_dirs(config, workdir)
  trained = [(v, s, d) for v, s, d in runs if has_checkpoint(d)]
  seeds = _seeds(config)
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
    if _load_results(rundir) is None:
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
      _update_results(rundir, cam_stability=score)
  summary = {"panel": os.path.relpath(panel, workdir), "panel_seed": seed,
             "panel_indices": indices.tolist(), "runs": scores}
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, "cam_stability.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
    if seeds and report_lib.collect(workdir):
      build_report(config, workdir)
  return summary
