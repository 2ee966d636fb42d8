"""Plots the default search's learning curves from its committed search_log.json.

    python results/cifar10_cpu/search_v2/curve.py [FOLDER]   # default: default/

Writes FOLDER/curves.png: f's accuracy on the 1,000 held-out images (with the critic's running
batch-norm statistics and with statistics re-estimated on real training images) beside the
control's final accuracy and chance; f's accuracy on the logged real half B'; and the gradient
penalty and the Wasserstein estimate.
"""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
  folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "default"
  record = json.loads((folder / "search_log.json").read_text())
  log, health = record["log"], record["health"]
  steps = [e["step"] for e in log]
  fig, (ax_acc, ax_critic) = plt.subplots(1, 2, figsize=(11, 4))
  if "heldout_acc" in log[0]:
    ax_acc.plot(steps, [e["heldout_acc"] for e in log], "o-", label="f held-out, running stats")
  if "heldout_acc_real_stats" in log[0]:
    ax_acc.plot(steps, [e["heldout_acc_real_stats"] for e in log], "o-",
                label="f held-out, real-image stats")
  ax_acc.plot(steps, [e["acc_real"] for e in log], ".", alpha=0.5,
              label="f on the step's real half B'")
  control = health.get("control", {}).get("heldout_accuracy")
  if control is not None:
    ax_acc.axhline(control, color="k", ls="--", label="control (CE only), held-out, end")
  ax_acc.axhline(health["chance"], color="gray", ls=":", label="chance")
  ax_acc.set(xlabel="search step", ylabel="accuracy", ylim=(0, 1),
             title="stage-1 classifier f (CIFAR-10, 1,000 held-out images)")
  ax_acc.legend(fontsize=7)
  ax_critic.plot(steps, [e["gp"] for e in log], "o-", label="gradient penalty")
  ax_critic.plot(steps, [e["wasserstein"] for e in log], "o-", label="Wasserstein estimate")
  ax_critic.set(xlabel="search step", title="critic")
  ax_critic.legend(fontsize=7)
  fig.tight_layout()
  out = folder / "curves.png"
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
