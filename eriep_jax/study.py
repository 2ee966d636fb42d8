"""The layout of a study's workdir, which the job (``experiment``) and the re-scoring modes
(``rescore``) both read: variants and their modifiers, seeds, run folders, the results files,
which runs are finished, the job's checks, and the closing summary and report.

    <workdir>/<variant>/seed_<k>/eval/results.json   # with config.seeds
    <workdir>/<variant>/eval/results.json            # a comparison without seeds
    <workdir>/eval/results.json                      # a single method
"""

import copy
import json
import os
from typing import Any

import jax
import ml_collections

from eriep_jax import config_checks
from eriep_jax.evaluate import corruptions as corruptions_lib
from eriep_jax.evaluate import report as report_lib
from eriep_jax.evaluate import robustness
from eriep_jax.train import step as step_lib

__all__ = ["RESULTS_FILE", "RANDOM_POLICY_DIR", "SUPCON_ENCODER_DIR", "INITIAL_POLICY",
           "FINAL_POLICY_GRID", "GRADCAM_DIR", "MODIFIERS", "parse_variant", "variant_config",
           "job_variants", "job_seeds", "run_dirs", "check_job", "load_results",
           "update_results", "build_report", "summarize_job"]


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


def job_variants(config) -> tuple[str, ...]:
  return tuple(config.get("compare_methods", ()) or ()) or (config.method,)


def job_seeds(config) -> tuple[int, ...]:
  return tuple(int(s) for s in (config.get("seeds", ()) or ()))


def run_dirs(config: ml_collections.ConfigDict, workdir: str) -> list[tuple[str, int, str]]:
  """``(variant, seed, run workdir)`` for every run of the job, seed-major."""
  seeds, compare = job_seeds(config), tuple(config.get("compare_methods", ()) or ())
  if not seeds:
    if not compare:
      return [(config.method, int(config.seed), workdir)]
    return [(v, int(config.seed), os.path.join(workdir, v)) for v in compare]
  return [(v, s, os.path.join(workdir, v, f"seed_{s}"))
          for s in seeds for v in job_variants(config)]


def check_job(config) -> None:
  """Every run's config, before any compute."""
  seeds = config.get("seeds", ()) or ()
  for s in seeds:
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
      raise ValueError(f"config.seeds={tuple(seeds)!r} must hold non-negative ints, e.g. "
                       "(0, 1, 2).")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds={tuple(seeds)!r} lists a seed twice; give each once.")
  variants = job_variants(config)
  if len(set(variants)) != len(variants):
    raise ValueError(f"compare_methods={variants!r} lists a variant twice; give each once.")
  for v in variants:
    config_checks.check_config(variant_config(config, v))
  # CIFAR-10-C: a selected set that is not prepared fails here, before any training.
  corruptions_lib.check_corruptions(config)


def load_results(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def update_results(rundir: str, **fields: Any) -> bool:
  """Adds ``fields`` to a finished run's ``results.json`` (atomically); False if none."""
  path = os.path.join(rundir, RESULTS_FILE)
  old = load_results(rundir)
  if old is None:
    return False
  old.update(fields)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(old, f, indent=2)
  os.replace(tmp, path)
  return True


def build_report(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=report``: ``<workdir>/report/`` from every finished run below the workdir.

  Raises:
    ValueError: if no run below the workdir has finished (says what to run).
  """
  return report_lib.write_report(workdir, config=config)


def summarize_job(config, workdir, runs, results) -> None:
  """The end of a job: the report (seeded sweeps) or the one-seed comparison table."""
  if job_seeds(config):
    if jax.process_index() == 0:   # it reads the files that process 0 wrote
      print(build_report(config, workdir)["markdown"], flush=True)
  elif config.get("compare_methods"):
    table = robustness.write_comparison(config, workdir,
                                        {v: results[d] for v, _, d in runs})
    print(table, flush=True)
    print(f"One seed ({config.seed}): one run per method cannot tell a real difference from "
          "seed noise. Set config.seeds for intervals; the seeded CIFAR-10 studies are in "
          "results/cifar10_cpu/ and results/cifar10_cpu_v1/ of the repository.", flush=True)


GRADCAM_DIR = "gradcam"
