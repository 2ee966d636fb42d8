"""Did the stage-1 search learn? Its classifier, its critic and how far the policy moved.

A search can run to the end without learning: a classifier f that stays at
chance gives the policy no class-preserving signal, and p and mu that never
leave their start make a "searched" policy a random one. AutoAlbument logs
the policy's average parameter change for this reason. ``search_health``
gathers, at the end of a search:

* f's accuracy on held-out real images (not the search's subset), beside the
  cross-entropy-only control's (``search.control``) and chance (1 / classes).
  Under a batch-norm critic it is given twice: with the critic's running
  statistics (``heldout_accuracy``), which average batches of real and
  perturbed images together, and with statistics re-estimated on real training
  images (``heldout_accuracy_real_stats``), the conditions the control is
  evaluated under. The chance warning and the comparison with the control use
  the second; the policy step sees f through the first;
* the largest logged gradient penalty and the final Wasserstein estimate;
* how far p, mu and W moved from their initial values (mean and max), and the
  spread of the final p and mu;

and two warnings with the likely cause and the fix: f within
``CHANCE_MARGIN`` of chance, or no p or mu moved by more than ``MIN_MOVE``.
``run_search`` prints them and writes them to ``search_log.json['health']``;
the stage-2 report shows them beside its verdicts.
"""

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from eriep_jax import policy as policy_lib

__all__ = ["search_health", "summary_lines", "CHANCE_MARGIN", "MIN_MOVE"]

# f counts as "at chance" within 5 accuracy points of 1 / classes.
CHANCE_MARGIN = 0.05
# A policy whose every p and mu moved by at most this much has not been searched.
MIN_MOVE = 0.05


def search_health(log: Sequence[Mapping[str, float]], initial: Any, final: Any, *,
                  num_classes: int, heldout_accuracy: Optional[float],
                  heldout_examples: int = 0,
                  control: Optional[Mapping[str, Any]] = None,
                  heldout_accuracy_real_stats: Optional[float] = None) -> dict[str, Any]:
  """The end-of-search figures and warnings (see the module docstring).

  Args:
    log: the logged metrics, one mapping per logged step (``step``, ``gp``,
      ``wasserstein``, ``ce_real``, ...).
    initial: the policy before the search. final: after it.
    num_classes: the classifier's number of classes (chance = 1 / classes).
    heldout_accuracy: f's accuracy on held-out real images, or None.
    heldout_examples: how many images that accuracy is over.
    control: the control's results (``heldout_accuracy``, ...), or None.
    heldout_accuracy_real_stats: under a batch-norm critic, the same accuracy
      with the statistics re-estimated on real training images (see
      :func:`eriep_jax.search.loop.real_batch_stats`), or None.

  Returns:
    A JSON-ready dict: the figures, ``gap_closed`` (the fraction of the gap
    from chance to the control that f closed, when both are known) and
    ``warnings`` (a list of sentences, empty when the search looks healthy).
  """
  chance = 1.0 / num_classes
  out: dict[str, Any] = {"chance": chance, "heldout_accuracy": heldout_accuracy,
                         "heldout_examples": int(heldout_examples)}
  if control is not None:
    out["control"] = dict(control)
  control_acc = None if control is None else control.get("heldout_accuracy")
  if heldout_accuracy is not None and control_acc is not None and control_acc > chance:
    out["gap_closed"] = (heldout_accuracy - chance) / (control_acc - chance)
  if heldout_accuracy_real_stats is not None:
    out["heldout_accuracy_real_stats"] = heldout_accuracy_real_stats
    if control_acc is not None and control_acc > chance:
      out["gap_closed_real_stats"] = ((heldout_accuracy_real_stats - chance) /
                                      (control_acc - chance))
  if log:
    last_step = log[-1]["step"]
    tail = [e for e in log if e["step"] > last_step - 20] or [log[-1]]
    out["max_gp"] = float(max(e["gp"] for e in log))
    out["final_wasserstein"] = float(log[-1]["wasserstein"])
    out["final_ce_real"] = float(np.mean([e["ce_real"] for e in tail]))
    if "acc_real" in log[-1]:
      out["final_acc_real"] = float(np.mean([e["acc_real"] for e in tail]))
  out["movement"] = policy_lib.movement(initial, final)
  values = policy_lib.constrain(final)
  p, mu = np.asarray(values.probability), np.asarray(values.magnitude)
  out["spread"] = {"p_min": float(p.min()), "p_max": float(p.max()), "p_std": float(p.std()),
                   "mu_min": float(mu.min()), "mu_max": float(mu.max()),
                   "mu_std": float(mu.std())}
  out["entropy"] = [float(h) for h in np.asarray(policy_lib.selection_entropy(final))]
  warnings = []
  # Judged like the control, whose batch-norm statistics are of real images only.
  judged = (heldout_accuracy if heldout_accuracy_real_stats is None
            else heldout_accuracy_real_stats)
  # Compared after rounding, so that "5 points above chance" is not decided by float error.
  if judged is not None and round(judged - chance, 6) < CHANCE_MARGIN:
    warnings.append(
        f"the search's classifier ended at {100 * judged:.1f}% held-out accuracy, "
        f"within {100 * CHANCE_MARGIN:.0f} points of chance ({100 * chance:.1f}%): the policy "
        "got no class-preserving signal. Likely cause: the critic's terms drown f's "
        "cross-entropy, or the critic exploded in its first steps; fix: give f more weight "
        "(search.classifier_weight=1.0), normalise the critic (search.norm='layer') and "
        "check that the largest gradient penalty stays small.")
  move = out["movement"]
  if round(max(move["p_max_change"], move["mu_max_change"]), 6) <= MIN_MOVE:
    steps = int(log[-1]["step"]) if log else 0
    if getattr(final, "parameterization", "projected") == "sigmoid":
      cause = ("sigmoid logits, which Adam moves by about the learning rate per step, so p "
               "and mu move by a quarter of that near 0.5; fix: "
               "policy.parameterization='projected' and the default search length")
    else:
      cause = (f"too few steps ({steps}) for Adam, which moves a stored p or mu by about the "
               "learning rate per step, or a critic that gives the policy no signal (see f's "
               "accuracy and the gradient penalty above); fix: the default search length "
               "(620 steps on CIFAR-10) and a critic whose f leaves chance")
    warnings.append(
        f"no p or mu moved by more than {MIN_MOVE} (largest changes: p "
        f"{move['p_max_change']:.3f}, mu {move['mu_max_change']:.3f}): the searched policy is "
        f"its initial one. Likely cause: {cause}.")
  out["warnings"] = warnings
  return out


def summary_lines(report: Mapping[str, Any]) -> list[str]:
  """A few printable lines of a ``search_health`` report."""
  pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
  lines = [f"search health: classifier held-out accuracy {pct(report['heldout_accuracy'])} "
           f"on {report['heldout_examples']} images (chance {pct(report['chance'])})"]
  if "control" in report:
    lines[-1] += f", cross-entropy-only control {pct(report['control'].get('heldout_accuracy'))}"
  if "gap_closed" in report:
    lines[-1] += f", {100 * report['gap_closed']:.0f}% of the gap to the control closed"
  if report.get("heldout_accuracy_real_stats") is not None:
    lines.append(f"  with batch-norm statistics from real images only: "
                 f"{pct(report['heldout_accuracy_real_stats'])}")
    if "gap_closed_real_stats" in report:
      lines[-1] += f", {100 * report['gap_closed_real_stats']:.0f}% of the gap closed"
  if "max_gp" in report:
    lines.append(f"  largest gradient penalty {report['max_gp']:.3g}, final Wasserstein "
                 f"estimate {report['final_wasserstein']:+.4f}, final CE_real "
                 f"{report['final_ce_real']:.3f}")
  m, sp = report["movement"], report["spread"]
  lines.append(f"  policy moved: p mean {m['p_mean_change']:.3f} / max {m['p_max_change']:.3f}, "
               f"mu mean {m['mu_mean_change']:.3f} / max {m['mu_max_change']:.3f}, W mean "
               f"{m['w_mean_change']:.3f} / max {m['w_max_change']:.3f}; final p in "
               f"[{sp['p_min']:.2f}, {sp['p_max']:.2f}], mu in [{sp['mu_min']:.2f}, "
               f"{sp['mu_max']:.2f}]")
  return lines
