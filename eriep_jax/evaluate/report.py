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

The statistics and verdict rules are in ``stats.py`` and the figures in
``figures.py``; this module reads the runs, writes the markdown and the files, and
re-exports the statistics' public names.
"""

import collections
import glob
import json
import os
import shutil
from typing import Any

from eriep_jax.evaluate import figures
from eriep_jax.evaluate.figures import can_plot
from eriep_jax.evaluate.stats import (METRICS, ORACLE, ORACLE_LABEL, PAPER_COLUMNS,
                                      claim_verdicts, compare_editions, diff_label,
                                      effect_visible, fmt, label, mean_std, metric_verdicts,
                                      paired_difference, paper_results, policy_changes,
                                      run_metrics, summarize, t_quantile, verdict)

__all__ = ["paper_results", "collect", "t_quantile", "mean_std", "paired_difference",
           "verdict", "summarize", "write_report", "run_metrics", "search_summary",
           "effect_visible", "compare_editions", "ORACLE_LABEL",
           "PAPER_COLUMNS", "METRICS", "can_plot"]


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


def _effect_lines(summary, model) -> list[str]:
  lines = ["## Can this protocol see an effect?", ""]
  effect = effect_visible(summary, model)
  if effect is None:
    return lines + ["No paired oracle and standard runs: whether this protocol can detect a "
                    "robustness gain at all is not known. Read every verdict below with that "
                    "in mind.", ""]
  cells = [f"{c} {d['mean']:+.1f} [{fmt(d['low'], 1)}, {fmt(d['high'], 1)}]"
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
    lines.append(f"| {row['model']} {label(row['variant'])} seed {row['seed']} | "
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
      cells = [f"{fmt(st[c]['mean'])} +- {fmt(st[c]['std'])}" if st[c]["n"] else "-"
               for c in cols]
      lines.append(f"| {label(v)} | {n} | " + " | ".join(cells) + " |")
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
          cells.append(f"{d['mean']:+.2f} [{fmt(d['low'])}, {fmt(d['high'])}]")
        lines.append(f"| {diff_label(name)} | {n} | " + " | ".join(cells) + " |")
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
      cells = [f"{fmt(st[c]['mean'], 3)} +- {fmt(st[c]['std'], 3)} ({st[c]['n']})"
               if st[c]["n"] else "-" for c in metrics]
      lines.append(f"| {v} | " + " | ".join(cells) + " |")
    rows = [(name, cols) for name, cols in m["metric_differences"].items()
            if any(cols.get(c) for c in metrics)]
    if rows:
      lines += ["", "Paired differences, mean [95% t-interval]:", "",
                "| difference | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
      for name, cols in rows:
        cells = [f"{cols[c]['mean']:+.3f} [{fmt(cols[c]['low'], 3)}, "
                 f"{fmt(cols[c]['high'], 3)}] (n={cols[c]['n']})" if cols.get(c) else "-"
                 for c in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines.append("")
  return lines


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
  verdicts = claim_verdicts(summary, paper) + metric_verdicts(summary)
  out_dir = os.path.join(workdir, "report")
  os.makedirs(out_dir, exist_ok=True)
  files = {}
  plots = can_plot()
  if plots and figures.plot_fig2(summary, main, os.path.join(out_dir, "fig2_noise.png")):
    files["fig2"] = "fig2_noise.png"
  if plots and figures.plot_fig3(summary, os.path.join(out_dir, "fig3_depth.png")):
    files["fig3"] = "fig3_depth.png"
  if plots and figures.plot_differences(summary, main, os.path.join(out_dir, "differences.png")):
    files["differences"] = "differences.png"
  if plots and figures.plot_drift(results, main, os.path.join(out_dir, "policy_drift.png")):
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
  changes = policy_changes(results)
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
