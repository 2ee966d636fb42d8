"""The report beside the paper: seeded means, paired differences, verdicts and figures.

``write_report(workdir)`` reads every finished run below ``workdir`` (each
``<...>/eval/results.json``, so a committed results folder works as well as a
live workdir) and writes ``<workdir>/report/``: ``report.json``,
``report.md``, ``fig2_noise.png`` (accuracy against Gaussian-noise std, one
line per variant with a band of one std over seeds), ``fig3_depth.png``
(accuracy at noise 0.2 against depth, when runs of several depths exist),
``policy_drift.png`` (the EPM's drift during stage 2), copies of the
searched and random policies' grids and of the Grad-CAM panel
(``gradcam/fig4_panel.png``, from ``--mode=gradcam``).

Beyond accuracy (``METRICS``): runs that carry a CAM-stability score or
CIFAR-10-C results get the same statistics for them, and Fig. 4's qualitative
claim gets a verdict from the eriep - standard interval of the CAM scores:
"same direction as the paper" when it lies above 0, "contradicted" below,
"inconclusive" when it contains 0.

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

The published numbers ship with the package (``paper_results.json``, a copy
of the paper's Tables 3-4 and Fig. 2 values with their table and column
names). matplotlib is imported inside the plotting functions, so that
``import eriep_jax.evaluate`` does not pull it in.
"""

import collections
import glob
import json
import math
import os
import shutil
from typing import Any, Iterable, Sequence

import numpy as np

from eriep_jax.evaluate import corruptions

__all__ = ["paper_results", "collect", "t_quantile", "mean_std", "paired_difference",
           "verdict", "summarize", "write_report", "run_metrics", "search_summary",
           "effect_visible", "compare_editions", "ORACLE_LABEL",
           "PAPER_COLUMNS", "METRICS"]

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


def collect(workdir: str) -> list[dict[str, Any]]:
  """Every finished run's results below ``workdir``, with ``run`` (its relative path)."""
  out = []
  for path in sorted(glob.glob(os.path.join(workdir, "**", "eval", "results.json"),
                               recursive=True)):
    if os.sep + "report" + os.sep in path:
      continue
    with open(path, encoding="utf-8") as f:
      r = json.load(f)
    r["run"] = os.path.relpath(os.path.dirname(os.path.dirname(path)), workdir)
    r.setdefault("variant", r.get("method"))
    r.setdefault("seed", 0)
    out.append(r)
  return out


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


def _paper_diff(paper: dict[str, Any], model: str, column: str) -> tuple[float, float, float] | None:
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


def _label(variant: str) -> str:
  """A variant's name in tables and figures; the oracle is always marked as what it is."""
  return ORACLE_LABEL if variant == ORACLE else variant


def _diff_label(name: str) -> str:
  variant, base = name.split(" - ")
  return f"{_label(variant)} - {base}"


def _fmt(x: float, digits: int = 2) -> str:
  return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _verdicts(summary: dict[str, Any], paper: dict[str, Any]) -> list[dict[str, Any]]:
  out = []
  for model, m in summary["models"].items():
    for name, cols in m["differences"].items():
      variant, base = name.split(" - ")
      if base != "standard" or not variant.startswith("eriep"):
        continue
      for c, d in cols.items():
        p = _paper_diff(paper, model, c)
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


def _metric_verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
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


def _protocol(results: list[dict[str, Any]]) -> str:
  r = results[0]
  p = r.get("protocol", {})
  return (f"{r['model']} at width {r.get('width')}, {p.get('num_train_steps', r.get('step'))} "
          f"steps ({p.get('num_epochs', '?')} epochs) of batch {p.get('batch_size', '?')}, "
          f"{p.get('optimizer', '?')} lr {p.get('learning_rate', '?')}, train augmentation "
          f"{p.get('train_augment', '?')}, on {r.get('dataset')} ({r['num_examples']} test images)")


def _search_folder(workdir: str, source: str | None) -> str | None:
  """``<workdir>/search`` if it holds a search log, else the folder of a path ``source``."""
  own = os.path.join(workdir, "search")
  if os.path.isfile(os.path.join(own, "search_log.json")):
    return own
  if source and source not in ("search", "init", "random"):
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    if os.path.isfile(os.path.join(folder, "search_log.json")):
      return folder
  return None


def search_summary(workdir: str, source: str | None = None) -> dict[str, Any] | None:
  """What the sweep's ``search_log.json`` says about whether stage 1 learned, or None.

  The log is ``<workdir>/search/search_log.json`` (a search the job ran) or,
  failing that, the one beside a ``policy.source`` path (a search folder or a
  ``policy_params.json`` in it, e.g. a committed search). A search written
  since the health report (``eriep_jax.search.health``) carries its figures;
  an older one gets the figures its log allows (final cross-entropy of f on B',
  largest gradient penalty) and a note that it had no held-out check.
  """
  folder = _search_folder(workdir, source)
  path = None if folder is None else os.path.join(folder, "search_log.json")
  if path is None or not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    record = json.load(f)
  if "health" in record:
    return dict(record["health"], has_health=True)
  log = record.get("log", [])
  if not log:
    return None
  return {"has_health": False, "final_ce_real": float(log[-1]["ce_real"]),
          "max_gp": float(max(e["gp"] for e in log)),
          "final_wasserstein": float(log[-1]["wasserstein"]), "warnings": []}


def _search_lines(search: dict[str, Any] | None) -> list[str]:
  if search is None:
    return []
  pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
  if not search["has_health"]:
    return [f"- Stage 1: this search predates the health report (no held-out check); its "
            f"classifier's last logged CE on real images was {search['final_ce_real']:.2f} "
            f"(chance with 10 classes: 2.30) and its largest gradient penalty "
            f"{search['max_gp']:.3g}. Read the verdicts as verdicts on that policy."]
  line = (f"- Stage 1: the search's classifier reached {pct(search['heldout_accuracy'])} on "
          f"{search['heldout_examples']} held-out images (chance {pct(search['chance'])}")
  if search.get("heldout_accuracy_real_stats") is not None:
    line += (f"; {pct(search['heldout_accuracy_real_stats'])} with batch-norm statistics of "
             f"real images")
  if "control" in search:
    line += f"; cross-entropy-only control {pct(search['control'].get('heldout_accuracy'))}"
  m = search["movement"]
  line += (f"); p moved by up to {m['p_max_change']:.2f} (mean {m['p_mean_change']:.3f}), mu by "
           f"up to {m['mu_max_change']:.2f} (mean {m['mu_mean_change']:.3f}).")
  lines = [line]
  lines += [f"- Stage-1 warning: {w}" for w in search.get("warnings", [])]
  return lines


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


def _effect_lines(summary, model) -> list[str]:
  lines = ["## Can this protocol see an effect?", ""]
  effect = effect_visible(summary, model)
  if effect is None:
    return lines + ["No paired oracle and standard runs: whether this protocol can detect a "
                    "robustness gain at all is not known. Read every verdict below with that "
                    "in mind.", ""]
  cells = [f"{c} {d['mean']:+.1f} [{_fmt(d['low'], 1)}, {_fmt(d['high'], 1)}]"
           for c, d in effect["columns"].items()]
  seeds = f"{effect['n']} seed" + ("s" if effect["n"] != 1 else "")
  lines.append(f"The oracle (a positive control, not a method of the paper: cross-entropy on "
               f"training images perturbed by the evaluation's own perturbations) against "
               f"standard, {model}, {seeds}, points with 95% intervals: "
               + "; ".join(cells) + ".")
  lines.append("")
  if effect["n"] < 2:
    lines.append("With one seed there is no interval yet: whether this protocol can see an "
                 "effect is open until a second seed of each has run.")
  elif effect["visible"]:
    lines.append(f"It beats standard with an interval above 0 on {len(effect['visible'])} of "
                 f"{len(effect['columns'])} perturbed columns ({', '.join(effect['visible'])}): "
                 "there, this protocol can see a robustness gain of about that size.")
  else:
    lines.append("**It does not beat standard with an interval above 0 on any perturbed "
                 "column: this protocol cannot see a robustness effect even where one is "
                 "built in, so its verdicts below cannot detect one either.**")
  return lines + [""]


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


def _edition_lines(rows, old_name) -> list[str]:
  if not rows:
    return []
  cols = list(rows[0]["change"])
  lines = ["## Against the first edition", "",
           f"The same model, variant and seed in `{old_name}` (first value) and here (second), "
           "and the change in points:", "",
           "| run | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
  for row in rows:
    cells = [f"{row['old'][c]:.2f} -> {row['new'][c]:.2f} ({row['change'][c]:+.2f})"
             for c in cols]
    lines.append(f"| {row['model']} {_label(row['variant'])} seed {row['seed']} | "
                 + " | ".join(cells) + " |")
  return lines + [""]


def _markdown(summary, verdicts, results, main_model, search=None) -> str:
  lines = ["# eriep_jax report", ""]
  lines.append(f"Protocol: {_protocol([r for r in results if r['model'] == main_model])}. "
               "The paper: width 1, 50 epochs (Table 3), mean of 3 runs. Accuracies in %; "
               "mean +- std over seeds (n).")
  lines.append("")
  lines += _effect_lines(summary, main_model)
  for model, m in summary["models"].items():
    cols = [c for c in summary["columns"]]
    lines += [f"## {model}", "", "| variant | n | " + " | ".join(cols) + " |",
              "|---|---:|" + "---:|" * len(cols)]
    for v, st in m["stats"].items():
      n = len(m["seeds"][v])
      cells = [f"{_fmt(st[c]['mean'])} +- {_fmt(st[c]['std'])}" if st[c]["n"] else "-"
               for c in cols]
      lines.append(f"| {_label(v)} | {n} | " + " | ".join(cells) + " |")
    if m["differences"]:
      lines += ["", "Paired differences (points), mean [95% t-interval]:", "",
                "| difference | n | " + " | ".join(cols) + " |",
                "|---|---:|" + "---:|" * len(cols)]
      for name, dcols in m["differences"].items():
        cells = []
        n = 0
        for c in cols:
          d = dcols.get(c)
          if d is None:
            cells.append("-")
            continue
          n = d["n"]
          cells.append(f"{d['mean']:+.2f} [{_fmt(d['low'])}, {_fmt(d['high'])}]")
        lines.append(f"| {_diff_label(name)} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
  metric_lines = _metrics_markdown(summary)
  if metric_lines:
    lines += metric_lines
  lines += ["## Verdicts against the paper", ""]
  lines += _search_lines(search)
  if verdicts:
    lines += [f"- {v['line']}" for v in verdicts]
  else:
    lines.append("- none yet: no ERIEP and standard runs of a paper model share a seed.")
  lines.append("")
  return "\n".join(lines)


def _metrics_markdown(summary) -> list[str]:
  metrics = summary.get("metrics") or []
  if not metrics:
    return []
  lines = ["## Beyond accuracy", ""]
  lines += [f"- `{m}`: {METRICS[m][2]}." for m in metrics]
  for model, m in summary["models"].items():
    if not any(st[c]["n"] for st in m["metric_stats"].values() for c in metrics):
      continue
    lines += ["", f"{model}, mean +- std (n):", "", "| variant | " + " | ".join(metrics) + " |",
              "|---|" + "---:|" * len(metrics)]
    for v, st in m["metric_stats"].items():
      cells = [f"{_fmt(st[c]['mean'], 3)} +- {_fmt(st[c]['std'], 3)} ({st[c]['n']})"
               if st[c]["n"] else "-" for c in metrics]
      lines.append(f"| {v} | " + " | ".join(cells) + " |")
    rows = [(name, cols) for name, cols in m["metric_differences"].items()
            if any(cols.get(c) for c in metrics)]
    if rows:
      lines += ["", "Paired differences, mean [95% t-interval]:", "",
                "| difference | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
      for name, cols in rows:
        cells = [f"{cols[c]['mean']:+.3f} [{_fmt(cols[c]['low'], 3)}, "
                 f"{_fmt(cols[c]['high'], 3)}] (n={cols[c]['n']})" if cols.get(c) else "-"
                 for c in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines.append("")
  return lines


def _plot_fig2(summary, model, path) -> bool:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  stats = summary["models"][model]["stats"]
  cols = [c for c in summary["columns"] if c.startswith("noise_")]
  if len(cols) < 2:
    return False
  stds = [float(c[len("noise_"):]) for c in cols]
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for v, st in stats.items():
    mean = np.asarray([st[c]["mean"] for c in cols])
    sd = np.nan_to_num(np.asarray([st[c]["std"] for c in cols]))
    ax.plot(stds, mean, marker="o", label=f"{_label(v)} (n={st[cols[0]]['n']})",
            linestyle=":" if v == ORACLE else "-")
    ax.fill_between(stds, mean - sd, mean + sd, alpha=0.15)
  ax.set_xlabel("Gaussian noise std")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"Fig. 2: {model}, mean +- 1 std over seeds")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _plot_differences(summary, model, path) -> bool:
  """Every variant's paired difference from standard, with its 95% interval, per column."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  diffs = {name: cols for name, cols in summary["models"][model]["differences"].items()
           if name.endswith(" - standard")}
  cols = summary["columns"]
  if not diffs:
    return False
  fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) + 2), 4.0))
  width = 0.8 / len(diffs)
  for i, (name, dcols) in enumerate(diffs.items()):
    xs, ys, lo, hi = [], [], [], []
    for j, c in enumerate(cols):
      d = dcols.get(c)
      if d is None:
        continue
      xs.append(j - 0.4 + width * (i + 0.5))
      ys.append(d["mean"])
      lo.append(d["mean"] - d["low"] if math.isfinite(d["low"]) else 0.0)
      hi.append(d["high"] - d["mean"] if math.isfinite(d["high"]) else 0.0)
    n = max((d["n"] for d in dcols.values() if d), default=0)
    ax.errorbar(xs, ys, yerr=[lo, hi], fmt="s" if name.startswith(ORACLE) else "o",
                capsize=3, label=f"{_diff_label(name)} (n={n})")
  ax.axhline(0.0, color="black", linewidth=0.8)
  ax.set_xticks(range(len(cols)))
  ax.set_xticklabels(cols, rotation=30, ha="right")
  ax.set_ylabel("difference from standard (points)")
  ax.set_title(f"{model}: paired difference from standard, mean and 95% t-interval")
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _depth(model: str) -> int | None:
  if model.startswith("cnn") and model[3:].isdigit():
    return int(model[3:])
  return None


def _plot_fig3(summary, path, column="noise_0.2") -> bool:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  models = sorted((m for m in summary["models"] if _depth(m)), key=_depth)
  if len(models) < 2 or column not in summary["columns"]:
    return False
  fig, ax = plt.subplots(figsize=(5, 3.6))
  for v in ("standard", "eriep"):
    pts = [(_depth(m), summary["models"][m]["stats"][v][column]) for m in models
           if v in summary["models"][m]["stats"]]
    if not pts:
      continue
    ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                yerr=[np.nan_to_num(p[1]["std"]) for p in pts], marker="o", capsize=3, label=v)
  ax.set_xlabel("depth (conv layers)")
  ax.set_ylabel(f"accuracy at {column} (%)")
  ax.set_title("Fig. 3: depth ablation, mean +- 1 std")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _plot_drift(results, model, path) -> bool:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [r for r in results if r["model"] == model and r.get("policy_drift")
          and r.get("method") == "eriep"]
  if not runs:
    return False
  keys = ["selected_probability", "selected_magnitude", "entropy_stage0"]
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
  colors = {}
  for r in runs:
    v = r["variant"]
    color = colors.setdefault(v, f"C{len(colors)}")
    steps = [h["step"] for h in r["policy_drift"]]
    for ax, k in zip(axes, keys):
      ax.plot(steps, [h.get(k, np.nan) for h in r["policy_drift"]], color=color, alpha=0.8,
              label=v if r["seed"] == min(x["seed"] for x in runs if x["variant"] == v) else None)
  for ax, k in zip(axes, keys):
    ax.set_title(k.replace("_", " "))
    ax.set_xlabel("stage-2 step")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"The EPM's drift during stage 2 ({model}; one line per seed)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _policy_changes(results) -> list[dict[str, Any]]:
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


def can_plot() -> bool:
  """Whether matplotlib is installed, so figures can be drawn.

  A machine without it (the project's GPU machine) still gets every table and JSON; the
  report's figures and the policy grids are skipped there. (``config.write_plots`` governs
  only the runs' noise-sweep plots, as before.)
  """
  try:
    import matplotlib  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def write_report(workdir: str, *, config: Any = None) -> dict[str, Any]:
  """Builds ``<workdir>/report/`` from the finished runs below ``workdir``.

  Args:
    workdir: a sweep's workdir or a committed results folder.
    config: the sweep's config; its ``model.name`` picks the main model
      (default: the model with the most runs), ``policy.source`` the search
      whose health is shown, and ``report_compare_with`` (optional) an earlier
      study's folder whose runs of the same variant and seed are tabled beside.

  Returns:
    ``{'summary', 'verdicts', 'markdown', 'files'}`` (also in report.json).

  Raises:
    ValueError: if no finished run is found (naming what to run first).
  """
  results = collect(workdir)
  if not results:
    raise ValueError(f"no finished run below {workdir!r} (no eval/results.json); train first "
                     f"with python launch.py --config=... --workdir={workdir} --mode=train.")
  paper = paper_results()
  summary = summarize(results)
  counts = collections.Counter(r["model"] for r in results)
  main = config.model.name if config is not None and config.model.name in counts else \
      counts.most_common(1)[0][0]
  verdicts = _verdicts(summary, paper) + _metric_verdicts(summary)
  out_dir = os.path.join(workdir, "report")
  os.makedirs(out_dir, exist_ok=True)
  files = {}
  plots = can_plot()
  if plots and _plot_fig2(summary, main, os.path.join(out_dir, "fig2_noise.png")):
    files["fig2"] = "fig2_noise.png"
  if plots and _plot_fig3(summary, os.path.join(out_dir, "fig3_depth.png")):
    files["fig3"] = "fig3_depth.png"
  if plots and _plot_differences(summary, main, os.path.join(out_dir, "differences.png")):
    files["differences"] = "differences.png"
  if plots and _plot_drift(results, main, os.path.join(out_dir, "policy_drift.png")):
    files["drift"] = "policy_drift.png"
  panel = os.path.join(workdir, "gradcam", "fig4_panel.png")
  if os.path.isfile(panel):
    shutil.copyfile(panel, os.path.join(out_dir, "fig4_gradcam.png"))
    files["fig4"] = "fig4_gradcam.png"
  source = None if config is None else config.policy.get("source")
  searched = _search_folder(workdir, source) or os.path.join(workdir, "search")
  for name, folder in (("searched_policy", searched),
                       ("random_policy", os.path.join(workdir, "random_policy"))):
    grid = os.path.join(folder, "policy_grid.png")
    if os.path.isfile(grid):
      shutil.copyfile(grid, os.path.join(out_dir, f"{name}_grid.png"))
      files[name] = f"{name}_grid.png"
  for r in results:   # what each eriep variant's EPM became, at its lowest seed
    grid = os.path.join(workdir, r["run"], "final_policy_grid.png")
    if r["model"] == main and os.path.isfile(grid) and r["seed"] == min(
        x["seed"] for x in results if x["variant"] == r["variant"] and x["model"] == main):
      name = f"final_policy_{r['variant']}_seed{r['seed']}"
      shutil.copyfile(grid, os.path.join(out_dir, name + ".png"))
      files[name] = name + ".png"
  search = search_summary(workdir, source)
  markdown = _markdown(summary, verdicts, results, main, search)
  old_dir = config.get("report_compare_with") if config is not None else None
  editions = compare_editions(collect(old_dir), results) if old_dir and os.path.isdir(old_dir) \
      else []
  markdown += "\n".join(_edition_lines(editions, old_dir))
  if files:
    markdown += "\n## Figures\n\n" + "\n".join(f"![{k}]({v})" for k, v in files.items()) + "\n"
  changes = _policy_changes(results)
  if changes:
    markdown += ("\n## The EPM after stage 2\n\nStages whose top-1 op changed between the "
                 "starting and the final discretised policy, and the mean change of the "
                 "selected ops' p and mu:\n\n| run | ops changed | mean dp | mean dmu |\n"
                 "|---|---:|---:|---:|\n" + "\n".join(
                     f"| {c['run']} | {c['ops_changed']}/{c['stages']} | "
                     f"{c['mean_probability_change']:+.3f} | {c['mean_magnitude_change']:+.3f} |"
                     for c in changes) + "\n")
  report = {"workdir": os.path.abspath(workdir), "main_model": main, "summary": summary,
            "verdicts": verdicts, "policy_changes": changes, "files": files,
            "search": search, "effect": effect_visible(summary, main), "editions": editions,
            "runs": [{k: r.get(k) for k in ("run", "model", "variant", "seed", "step",
                                            "train_wall_time_s", "git_commit")}
                     for r in results]}
  with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1, default=lambda x: None)
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write(markdown)
  report["markdown"] = markdown
  return report
