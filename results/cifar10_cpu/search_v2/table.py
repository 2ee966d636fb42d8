"""Prints the critic table of results/cifar10_cpu/search_v2/ from its committed search logs.

    python results/cifar10_cpu/search_v2/table.py

One row per search (candidates, then the default): the critic, f's weight in the critic step,
Adam's b2, steps, the classifier's accuracy on 1,000 held-out training images (chance 10%)
with the critic's running batch-norm statistics (a mixture of real and perturbed images) and,
where logged, with statistics re-estimated on real training images (as the control's are), the
largest logged gradient penalty, the final Wasserstein estimate, how far p and mu moved
(max over the L x K x N entries), the spread of the final p, and the wall time.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
  print("| search | critic | f weight | b2 | steps | held-out acc (running stats) | held-out acc (real stats) | control | max GP | final W | "
        "p moved (max) | mu moved (max) | final p std | wall |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  logs = sorted(HERE.glob("candidates/*/search_log.json")) + sorted(HERE.glob("default/search_log.json"))
  for path in logs:
    r = json.loads(path.read_text())
    h, s = r["health"], r.get("settings", {})
    name = path.parent.name
    control = h.get("control", {}).get("heldout_accuracy")
    real = h.get("heldout_accuracy_real_stats")
    if real is None:
      real_text = "n/a" if s["norm"] == "batch" else "(same)"
    else:
      real_text = f"{100 * real:.1f}%"
    m = h["movement"]
    print(f"| {name} | {s['backbone']} ({s['norm']}) | {s['classifier_weight']:g} | {s['b2']:g} | "
          f"{r['num_steps']} | {100 * h['heldout_accuracy']:.1f}% | {real_text} | "
          f"{'-' if control is None else f'{100 * control:.1f}%'} | {h['max_gp']:.3g} | "
          f"{h['final_wasserstein']:+.3f} | {m['p_max_change']:.3f} | {m['mu_max_change']:.3f} | "
          f"{h['spread']['p_std']:.3f} | {r['wall_time_s'] / 60:.1f} min |")


if __name__ == "__main__":
  main()
