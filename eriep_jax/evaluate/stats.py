"""The report's statistics: seeded means, paired differences with t-intervals, and verdicts.

Statistics. For each (model, variant, column): the mean and the sample std
(ddof = 1) over seeds, with n. For each variant, the paired difference from
``standard`` at the same seed (and from ``eriep`` for the random-policy
control), with a 95% Student-t interval mean +- t_{0.975, n-1} s / sqrt(n).

Verdicts, per paper claim (a column of Table 3 or Fig. 2 with a published
ERIEP - standard difference d_paper), from the interval [lo, hi]:

- ``inconclusive``: the interval contains 0 (also when it contains d_paper
  too: such an interval cannot tell the two apart; a deliberate reading of
  the issue's rules, which overlap there), or n < 2;
- ``reproduced``: it contains d_paper and excludes 0;
- ``same direction, smaller`` / ``larger``: it excludes 0 and d_paper, on
  d_paper's side of 0;
- ``contradicted``: it excludes 0 on the other side.

Beyond accuracy (``METRICS``): runs that carry a CAM-stability score or
CIFAR-10-C results get the same statistics, and Fig. 4's qualitative claim a
verdict from the eriep - standard interval of the CAM scores.

The published numbers ship with the package (``paper_results.json``, a copy
of the paper's Tables 3-4 and Fig. 2 values with their table and column
names). No file is written here (``report.py``) and nothing drawn (``figures.py``).
"""

import collections
import json
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from eriep_jax.evaluate import corruptions

__all__ = ["paper_results", "t_quantile", "mean_std", "paired_difference", "verdict",
           "summarize", "run_metrics", "effect_visible", "compare_editions", "claim_verdicts",
           "metric_verdicts", "policy_changes", "paper_diff", "label", "diff_label", "fmt",
           "ORACLE", "ORACLE_LABEL", "PAPER_COLUMNS", "METRICS"]


# Our column -> the paper's (Table 3 row names; Fig. 2's approximate noise values).
PAPER_COLUMNS = {"clean": ("table3_cifar10", "none"), "perturb1": ("table3_cifar10", "perturb1"),
                 "perturb2": ("table3_cifar10", "perturb2"),
                 "perturb3": ("table3_cifar10", "perturb3"),
                 "noise_0": ("fig2_gaussian_noise_cifar10", "noise_std_0.0"),
                 "noise_0.4": ("fig2_gaussian_noise_cifar10", "noise_std_0.4")}


# Two-sided 95% quantiles t_{0.975, df} for df = 1..30 (Student's t).
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def paper_results() -> dict[str, Any]:
  """The paper's published numbers (a copy of shared/paper/paper_results.json)."""
  with open(os.path.join(os.path.dirname(__file__), "paper_results.json"),
            encoding="utf-8") as f:
    return json.load(f)


def t_quantile(df: int) -> float:
  """t_{0.975, df}: the 95% two-sided Student-t quantile (normal beyond df = 30)."""
  if df < 1:
    raise ValueError(f"df={df} must be >= 1; an interval needs at least 2 seeds.")
  if df <= len(_T975):
    return _T975[df - 1]
  # Cornish-Fisher expansion around the normal quantile; within 1e-4 for df > 30.
  z = 1.959964
  return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_std(values: Sequence[float]) -> dict[str, float]:
  """``{'mean', 'std', 'n'}``; std with ddof = 1 (nan for n = 1; both nan for n = 0)."""
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean()) if v.size else math.nan,
          "std": float(v.std(ddof=1)) if v.size > 1 else math.nan, "n": int(v.size)}


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, Any] | None:
  """a - b over the seeds both have: mean, std, n, 95% t half-width and interval."""
  seeds = sorted(set(a) & set(b))
  if not seeds:
    return None
  d = np.asarray([a[s] - b[s] for s in seeds], np.float64)
  out = {"seeds": seeds, "differences": d.tolist(), **mean_std(d)}
  if d.size > 1:
    half = t_quantile(d.size - 1) * out["std"] / math.sqrt(d.size)
    out.update(half_width=float(half), low=float(out["mean"] - half),
               high=float(out["mean"] + half))
  else:
    out.update(half_width=math.nan, low=math.nan, high=math.nan)
  return out


def verdict(diff: dict[str, Any] | None, paper_diff: float | None) -> str:
  """The verdict on one claim (see the module docstring)."""
  if diff is None:
    return "not measured"
  if diff["n"] < 2 or not math.isfinite(diff["low"]):
    return "inconclusive"
  lo, hi = diff["low"], diff["high"]
  if lo <= 0 <= hi:
    return "inconclusive"
  if paper_diff is None:
    return "positive" if lo > 0 else "negative"
  if lo <= paper_diff <= hi:
    return "reproduced"
  if (lo > 0) == (paper_diff > 0):
    return "same direction, larger" if abs(diff["mean"]) > abs(paper_diff) else \
        "same direction, smaller"
  return "contradicted"


def _columns(results: Iterable[dict[str, Any]]) -> list[str]:
  cols = []
  for r in results:
    for c in r["accuracy"]:
      if c not in cols:
        cols.append(c)
  return cols


# Scores beside accuracy, each one number per run: name -> (results field, key, what it is).
METRICS = {
    "cam_pearson": ("cam_stability", "pearson",
                    "Grad-CAM stability under the Fig. 4 blur: mean Pearson r of CAM(x), "
                    "CAM(blur(x))"),
    "cam_top20_iou": ("cam_stability", "top20_iou",
                      "Grad-CAM stability: mean IoU of the top-20% regions of CAM(x), "
                      "CAM(blur(x))"),
    "c10c_mean_accuracy": ("corruptions", "mean_accuracy",
                           "CIFAR-10-C: mean accuracy (%) over corruptions and severities"),
    "c10c_mce": ("corruptions_vs_standard", "mce",
                 "CIFAR-10-C: mean corruption error relative to standard at the same seed, "
                 "mean_c sum_s E_f / sum_s E_standard (%, standard = 100; lower is better)"),
    "c10c_relative_mce": ("corruptions_vs_standard", "relative_mce",
                          "CIFAR-10-C: Hendrycks' relative mCE against standard, "
                          "mean_c sum_s (E_f - E_f,clean) / sum_s (E_std - E_std,clean) (%)"),
}


def run_metrics(r: dict[str, Any], standard: dict[str, Any] | None = None) -> dict[str, float]:
  """The ``METRICS`` that run ``r`` has, as ``{name: value}``.

  With ``standard`` (the standard run of the same model and seed), the
  CIFAR-10-C errors relative to it are added when both runs have them.
  """
  r = dict(r)
  if standard is not None and r.get("corruptions") and standard.get("corruptions"):
    r["corruptions_vs_standard"] = corruptions.relative_corruption_errors(
        r["corruptions"], r["accuracy"]["clean"], standard["corruptions"],
        standard["accuracy"]["clean"])
  out = {}
  for name, (field, key, _) in METRICS.items():
    block = r.get(field)
    if isinstance(block, dict) and isinstance(block.get(key), (int, float)):
      out[name] = float(block[key])
  return out


def _table(variants: dict[str, dict[int, dict[str, float]]], columns: Sequence[str]):
  """Stats per (variant, column) and the paired differences, for ``{v: {seed: values}}``."""
  stats = {v: {c: mean_std([runs[s][c] for s in sorted(runs) if c in runs[s]])
               for c in columns} for v, runs in variants.items()}
  diffs = {}
  for v, runs in variants.items():
    for base in ("standard", "eriep"):
      if v == base or base not in variants or (base == "eriep" and "random" not in v):
        continue
      diffs[f"{v} - {base}"] = {c: paired_difference(
          {s: r[c] for s, r in runs.items() if c in r},
          {s: r[c] for s, r in variants[base].items() if c in r}) for c in columns}
  return stats, diffs


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
  """Means/stds per (model, variant, column) and paired differences per model.

  The accuracy columns go into ``stats``/``differences``; the ``METRICS`` that
  some runs have (CAM stability, CIFAR-10-C) into ``metric_stats`` and
  ``metric_differences``, computed the same way.
  """
  by = collections.defaultdict(lambda: collections.defaultdict(dict))
  for r in results:
    by[r["model"]][r["variant"]][int(r["seed"])] = r
  columns = _columns(results)
  values = {model: {v: {s: run_metrics(r, variants.get("standard", {}).get(s))
                        for s, r in runs.items()} for v, runs in variants.items()}
            for model, variants in by.items()}
  metrics = [m for m in METRICS if any(m in x for vs in values.values() for runs in vs.values()
                                       for x in runs.values())]
  summary = {}
  for model, variants in by.items():
    stats, diffs = _table({v: {s: r["accuracy"] for s, r in runs.items()}
                           for v, runs in variants.items()}, columns)
    m_stats, m_diffs = _table(values[model], metrics)
    summary[model] = {"stats": stats, "differences": diffs,
                      "metric_stats": m_stats, "metric_differences": m_diffs,
                      "seeds": {v: sorted(runs) for v, runs in variants.items()}}
  return {"columns": columns, "metrics": metrics, "models": summary}


def paper_diff(paper: dict[str, Any], model: str, column: str) -> tuple[float, float, float] | None:
  """(standard, eriep, eriep - standard) in the paper for our ``column``, or None."""
  if column not in PAPER_COLUMNS:
    return None
  table, row = PAPER_COLUMNS[column]
  block = paper.get(table, {})
  if table == "table3_cifar10":
    if model not in block.get("models", []):
      return None
    i = block["models"].index(model)
    std, eri = block[row]["standard"][i], block[row]["eriep"][i]
  else:
    if model != "cnn8" or row not in block:   # Fig. 2 is the 8-layer CNN
      return None
    std, eri = block[row]["standard"], block[row]["eriep"]
  return float(std), float(eri), float(eri - std)


ORACLE = "oracle"


ORACLE_LABEL = "oracle (positive control: trains on the test perturbations; not a paper method)"


def label(variant: str) -> str:
  """A variant's name in tables and figures; the oracle is always marked as what it is."""
  return ORACLE_LABEL if variant == ORACLE else variant


def diff_label(name: str) -> str:
  variant, base = name.split(" - ")
  return f"{label(variant)} - {base}"


def fmt(x: float, digits: int = 2) -> str:
  return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def claim_verdicts(summary: dict[str, Any], paper: dict[str, Any]) -> list[dict[str, Any]]:
  out = []
  for model, m in summary["models"].items():
    for name, cols in m["differences"].items():
      variant, base = name.split(" - ")
      if base != "standard" or not variant.startswith("eriep"):
        continue
      for c, d in cols.items():
        p = paper_diff(paper, model, c)
        if p is None or d is None:
          continue
        v = verdict(d, p[2])
        interval = (f"{d['mean']:+.1f} +- {d['half_width']:.1f}" if d["n"] > 1 else
                    f"{d['mean']:+.1f} (no interval)")
        line = (f"{c}, {model} {variant} - standard: {interval} points over {d['n']} seeds "
                f"(paper: {p[2]:+.1f}): {v}")
        out.append({"model": model, "variant": variant, "column": c, "verdict": v,
                    "ours": d, "paper_standard": p[0], "paper_eriep": p[1],
                    "paper_difference": p[2], "line": line})
  return out


def metric_verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
  """Fig. 4's claim as numbers: ERIEP's CAM is more stable under blur than standard's."""
  out = []
  for model, m in summary["models"].items():
    for name, cols in m.get("metric_differences", {}).items():
      variant, base = name.split(" - ")
      if base != "standard" or not variant.startswith("eriep"):
        continue
      for c in ("cam_pearson", "cam_top20_iou"):
        d = cols.get(c)
        if d is None:
          continue
        v = {"positive": "same direction as the paper (ERIEP's map is more stable)",
             "negative": "contradicted (ERIEP's map is less stable)"}.get(
                 verdict(d, None), verdict(d, None))
        interval = (f"{d['mean']:+.3f} +- {d['half_width']:.3f}" if d["n"] > 1 else
                    f"{d['mean']:+.3f} (no interval)")
        out.append({"model": model, "variant": variant, "column": c, "verdict": v, "ours": d,
                    "line": f"{c}, {model} {variant} - standard: {interval} over {d['n']} "
                            f"seeds (paper, Fig. 4: qualitative, ERIEP more stable): {v}"})
  return out


def effect_visible(summary: dict[str, Any], model: str) -> dict[str, Any] | None:
  """Can this protocol see a robustness effect? The oracle against standard, or None.

  Returns ``{'columns': {column: difference}, 'visible': [columns whose 95%
  interval lies above 0], 'n': seeds}`` over the perturbed columns (every
  column but ``clean`` and ``noise_0``), or None without paired oracle and
  standard runs.
  """
  diffs = summary["models"].get(model, {}).get("differences", {})
  cols = {c: d for c, d in diffs.get(f"{ORACLE} - standard", {}).items()
          if c not in ("clean", "noise_0") and d is not None}
  if not cols:
    return None
  visible = [c for c, d in cols.items()
             if d["n"] > 1 and math.isfinite(d["low"]) and d["low"] > 0]
  return {"columns": cols, "visible": visible, "n": max(d["n"] for d in cols.values())}


def compare_editions(old: list[dict[str, Any]], new: list[dict[str, Any]],
                     columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Runs of two studies side by side: the same model, variant and seed in both.

  Args:
    old, new: ``collect`` outputs of the two studies.
    columns: the accuracy columns to compare (default: those both have).

  Returns:
    One row per shared (model, variant, seed), sorted, with ``old``, ``new``
    and ``change`` (new - old, points) per column.
  """
  key = lambda r: (r["model"], r["variant"], int(r["seed"]))  # noqa: E731
  old_by = {key(r): r for r in old}
  rows = []
  for r in sorted(new, key=key):
    o = old_by.get(key(r))
    if o is None:
      continue
    cols = [c for c in (columns or r["accuracy"]) if c in r["accuracy"] and c in o["accuracy"]]
    rows.append({"model": r["model"], "variant": r["variant"], "seed": int(r["seed"]),
                 "old": {c: o["accuracy"][c] for c in cols},
                 "new": {c: r["accuracy"][c] for c in cols},
                 "change": {c: r["accuracy"][c] - o["accuracy"][c] for c in cols}})
  return rows


def policy_changes(results) -> list[dict[str, Any]]:
  """How far each eriep run's final discretised policy is from its start."""
  out = []
  for r in results:
    start, final = r.get("initial_policy"), r.get("final_policy")
    if r.get("method") != "eriep" or not start or not final:
      continue
    a = [op for sub in start["subpolicies"] for op in sub]
    b = [op for sub in final["subpolicies"] for op in sub]
    out.append({"run": r["run"], "variant": r["variant"], "seed": r["seed"],
                "ops_changed": sum(x["op"] != y["op"] for x, y in zip(a, b)),
                "stages": len(a),
                "mean_probability_change": float(np.mean([y["probability"] - x["probability"]
                                                          for x, y in zip(a, b)])),
                "mean_magnitude_change": float(np.mean([y["magnitude"] - x["magnitude"]
                                                        for x, y in zip(a, b)]))})
  return out
