"""The report's figures (matplotlib, imported inside each function): Fig. 2, Fig. 3, the
paired differences and the EPM's drift.

Each ``plot_*`` returns False when it has nothing to draw. ``can_plot`` says whether
matplotlib is installed; without it (the project's GPU machine) the report keeps its tables.
"""

import math

import numpy as np

from eriep_jax.evaluate.stats import ORACLE, diff_label, label

__all__ = ["can_plot", "plot_fig2", "plot_differences", "plot_fig3", "plot_drift"]


def plot_fig2(summary, model, path) -> bool:
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
    ax.plot(stds, mean, marker="o", label=f"{label(v)} (n={st[cols[0]]['n']})",
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


def plot_differences(summary, model, path) -> bool:
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
                capsize=3, label=f"{diff_label(name)} (n={n})")
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


def plot_fig3(summary, path, column="noise_0.2") -> bool:
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


def plot_drift(results, model, path) -> bool:
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
