"""Tests for the report: statistics, verdicts and the packaged paper numbers, on hand-made runs."""

import json
import math
import os
import pathlib
import warnings

import ml_collections
import numpy as np
import pytest
from scipy import stats

from eriep_jax.evaluate import report

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
COLUMNS = ("clean", "perturb1", "perturb2", "perturb3", "noise_0", "noise_0.2", "noise_0.4")


def _write(root, variant, seed, acc, model="cnn8"):
  d = root / variant / f"seed_{seed}" / "eval"
  d.mkdir(parents=True)
  r = {"variant": variant, "method": variant.split("_")[0], "seed": seed, "model": model,
       "width": 0.25, "dataset": "folder:cifar10", "step": 10, "num_examples": 100,
       "accuracy": acc, "protocol": {"num_epochs": 1, "batch_size": 8}}
  (d / "results.json").write_text(json.dumps(r))


def _sweep(tmp_path):
  """standard = base; eriep: clear win on perturb1, clear loss on perturb2, tie on perturb3."""
  base = {0: 50.0, 1: 52.0, 2: 54.0}
  win = {0: 10.0, 1: 12.0, 2: 14.0}        # differences 10, 12, 14: mean 12, std 2
  loss = {0: -3.0, 1: -4.0, 2: -5.0}       # mean -4, std 1
  tie = {0: 1.0, 1: -1.0, 2: 0.0}          # mean 0, std 1
  for s in (0, 1, 2):
    std_acc = {c: base[s] for c in COLUMNS}
    eri = dict(std_acc)
    eri["perturb1"] = base[s] + win[s]
    eri["perturb2"] = base[s] + loss[s]
    eri["perturb3"] = base[s] + tie[s]
    eri["clean"] = base[s] + 3.0 + 0.1 * s   # 3.0, 3.1, 3.2: paper's +3.27 just outside
    _write(tmp_path, "standard", s, std_acc)
    _write(tmp_path, "eriep", s, eri)
  return tmp_path


def test_t_quantile_matches_scipy():
  for df in (1, 2, 3, 5, 10, 29, 30, 31, 45, 100, 1000):
    np.testing.assert_allclose(report.t_quantile(df), stats.t.ppf(0.975, df), atol=2e-4)
  with pytest.raises(ValueError, match="at least 2 seeds"):
    report.t_quantile(0)


def test_mean_std_by_hand_and_empty_without_warning():
  got = report.mean_std([1.0, 2.0, 6.0])   # mean 3, deviations -2 -1 3: var 14/2
  assert got["n"] == 3 and got["mean"] == 3.0 and math.isclose(got["std"], math.sqrt(7.0))
  one = report.mean_std([4.0])
  assert one["n"] == 1 and one["mean"] == 4.0 and math.isnan(one["std"])
  with warnings.catch_warnings():
    warnings.simplefilter("error")        # a variant without the metric: no RuntimeWarning
    empty = report.mean_std([])
  assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["std"])


def test_means_intervals_and_verdicts_equal_hand_computed(tmp_path):
  out = report.write_report(str(_sweep(tmp_path)))
  m = out["summary"]["models"]["cnn8"]
  st = m["stats"]["standard"]["clean"]
  assert st["n"] == 3 and st["mean"] == pytest.approx(52.0) and st["std"] == pytest.approx(2.0)
  d = m["differences"]["eriep - standard"]
  t2 = 4.302653                                  # t_{0.975, 2}
  win = d["perturb1"]
  assert win["mean"] == pytest.approx(12.0) and win["std"] == pytest.approx(2.0)
  assert win["half_width"] == pytest.approx(t2 * 2.0 / math.sqrt(3), rel=1e-4)
  assert win["low"] == pytest.approx(12.0 - 4.968275, rel=1e-4)
  loss = d["perturb2"]
  assert loss["mean"] == pytest.approx(-4.0) and loss["half_width"] == pytest.approx(
      t2 / math.sqrt(3), rel=1e-4)
  assert d["perturb3"]["mean"] == pytest.approx(0.0)
  verdicts = {v["column"]: v for v in out["verdicts"]}
  # perturb1: [7.03, 16.97] excludes 0 and the paper's +23.20: same side, smaller.
  assert verdicts["perturb1"]["verdict"] == "same direction, smaller"
  assert verdicts["perturb1"]["paper_difference"] == pytest.approx(63.17 - 39.97)
  assert verdicts["perturb2"]["verdict"] == "contradicted"   # [-6.48, -1.52], paper +25.09
  assert verdicts["perturb3"]["verdict"] == "inconclusive"   # [-2.48, 2.48]
  # clean: 3.1 +- 0.248 = [2.85, 3.35] contains the paper's 80.01 - 76.74 = 3.27.
  assert verdicts["clean"]["verdict"] == "reproduced"
  assert ("perturb1, cnn8 eriep - standard: +12.0 +- 5.0 points over 3 seeds (paper: +23.2): "
          "same direction, smaller") == verdicts["perturb1"]["line"]
  # noise_0.4 (Fig. 2, paper +7): a zero difference with zero spread has no interval width;
  # it is on 0, so inconclusive.
  assert verdicts["noise_0.4"]["verdict"] == "inconclusive"
  md = (tmp_path / "report" / "report.md").read_text()
  assert "same direction, smaller" in md and "| eriep | 3 |" in md
  assert (tmp_path / "report" / "fig2_noise.png").stat().st_size > 1000
  saved = json.loads((tmp_path / "report" / "report.json").read_text())
  assert [v["verdict"] for v in saved["verdicts"]] == [v["verdict"] for v in out["verdicts"]]


def test_verdict_rules():
  def diff(lo, hi):
    return {"n": 3, "low": lo, "high": hi, "mean": (lo + hi) / 2}
  assert report.verdict(diff(1, 5), 3) == "reproduced"
  assert report.verdict(diff(1, 2), 3) == "same direction, smaller"
  assert report.verdict(diff(4, 6), 3) == "same direction, larger"
  assert report.verdict(diff(-3, -1), 3) == "contradicted"
  assert report.verdict(diff(-1, 4), 3) == "inconclusive"   # contains 0 and 3
  assert report.verdict({"n": 1, "low": math.nan, "high": math.nan, "mean": 2}, 3) == \
      "inconclusive"


def test_verdict_rules_at_their_boundaries():
  """Closed intervals: a bound on 0 contains 0, a bound on d_paper contains d_paper."""
  def diff(lo, hi, n=3):
    return {"n": n, "low": lo, "high": hi, "mean": (lo + hi) / 2}
  # A bound exactly at 0: the interval contains 0, whatever the paper says.
  assert report.verdict(diff(0.0, 4.0), 3.0) == "inconclusive"    # not 'reproduced'
  assert report.verdict(diff(-4.0, 0.0), 3.0) == "inconclusive"   # not 'contradicted'
  assert report.verdict(diff(0.0, 2.0), -3.0) == "inconclusive"
  assert report.verdict(diff(0.0, 4.0), None) == "inconclusive"   # not 'negative'
  assert report.verdict(diff(-4.0, 0.0), None) == "inconclusive"
  # A bound exactly at d_paper, 0 excluded: reproduced.
  assert report.verdict(diff(3.0, 5.0), 3.0) == "reproduced"      # not '..., larger'
  assert report.verdict(diff(1.0, 3.0), 3.0) == "reproduced"      # not '..., smaller'
  assert report.verdict(diff(-3.0, -1.0), -3.0) == "reproduced"
  assert report.verdict(diff(-5.0, -3.0), -3.0) == "reproduced"
  # No published number: the sign of an interval that excludes 0.
  assert report.verdict(diff(0.5, 2.0), None) == "positive"
  assert report.verdict(diff(-2.0, -0.5), None) == "negative"
  assert report.verdict(diff(-1.0, 2.0), None) == "inconclusive"
  # One seed: no interval, even with finite bounds; no difference at all: not measured.
  assert report.verdict(diff(1.0, 5.0, n=1), 3.0) == "inconclusive"
  assert report.verdict(None, 3.0) == "not measured"


def test_depth_figure_and_refusal(tmp_path):
  for model in ("cnn4", "cnn8"):
    for s in (0, 1):
      for v, acc in (("standard", 40.0 + s), ("eriep", 45.0 + 2 * s)):
        _write(tmp_path / model, v, s, {c: acc for c in COLUMNS}, model=model)
  out = report.write_report(str(tmp_path))
  assert out["files"]["fig3"] == "fig3_depth.png"
  assert out["summary"]["models"]["cnn4"]["differences"]["eriep - standard"]["noise_0.2"][
      "mean"] == pytest.approx(5.5)
  with pytest.raises(ValueError, match="no finished run below .* train first"):
    report.write_report(str(tmp_path / "empty"))


@pytest.mark.skipif(not (SHARED / "paper" / "paper_results.json").is_file(),
                    reason="../shared/paper is absent (the packaged copy is then untested)")
def test_packaged_paper_numbers_equal_shared():
  shared = json.loads((SHARED / "paper" / "paper_results.json").read_text())
  assert report.paper_results() == shared
  assert os.path.basename(report.__file__) == "report.py"


def test_report_shows_the_searchs_health_beside_the_verdicts(tmp_path):
  root = _sweep(tmp_path)
  (root / "search").mkdir()
  log = [{"step": 20, "gp": 3.5, "wasserstein": 0.2, "ce_real": 2.31},
         {"step": 40, "gp": 0.5, "wasserstein": 0.1, "ce_real": 2.29}]
  # A search from before the health report: only its log.
  (root / "search" / "search_log.json").write_text(json.dumps({"log": log}))
  md = report.write_report(str(root))["markdown"]
  assert ("Stage 1: this search predates the health report (no held-out check); its "
          "classifier's last logged CE on real images was 2.29") in md
  assert "largest gradient penalty 3.5" in md
  # A search with its health: held-out accuracy beside the control, movement, warnings.
  health = {"chance": 0.1, "heldout_accuracy": 0.123, "heldout_examples": 1000,
            "control": {"heldout_accuracy": 0.47},
            "movement": {"p_max_change": 0.5, "p_mean_change": 0.1, "mu_max_change": 0.25,
                         "mu_mean_change": 0.05},
            "warnings": ["the search's classifier ended at 12.3% ..."]}
  (root / "search" / "search_log.json").write_text(json.dumps({"log": log, "health": health}))
  out = report.write_report(str(root))
  md = out["markdown"]
  verdict_section = md[md.index("## Verdicts against the paper"):]
  assert ("Stage 1: the search's classifier reached 12.3% on 1000 held-out images (chance "
          "10.0%; cross-entropy-only control 47.0%); p moved by up to 0.50 (mean 0.100), mu by "
          "up to 0.25 (mean 0.050).") in verdict_section
  assert "Stage-1 warning: the search's classifier ended at 12.3%" in verdict_section
  assert out["search"]["heldout_accuracy"] == 0.123
  # A batch-norm critic's accuracy under real-image statistics is shown beside it.
  health["heldout_accuracy_real_stats"] = 0.401
  (root / "search" / "search_log.json").write_text(json.dumps({"log": log, "health": health}))
  md = report.write_report(str(root))["markdown"]
  assert ("reached 12.3% on 1000 held-out images (chance 10.0%; 40.1% with batch-norm "
          "statistics of real images; cross-entropy-only control 47.0%)") in md
  # A sweep that started from a committed search (policy.source a path) reports that
  # search's health; the job's own <workdir>/search comes first.
  committed = tmp_path / "committed_search"
  committed.mkdir()
  (committed / "search_log.json").write_text(json.dumps(
      {"log": log, "health": dict(health, heldout_accuracy=0.2, heldout_accuracy_real_stats=0.3)}))
  (committed / "policy_params.json").write_text("{}")
  assert report.search_summary(str(root), str(committed))["heldout_accuracy"] == 0.123
  os.remove(root / "search" / "search_log.json")
  for source in (str(committed), str(committed / "policy_params.json")):
    assert report.search_summary(str(root), source)["heldout_accuracy"] == 0.2
  assert report.search_summary(str(root), "search") is None
  assert report.search_summary(str(root)) is None


def test_the_oracle_section_says_whether_the_protocol_can_see_an_effect(tmp_path):
  root = _sweep(tmp_path)
  md = report.write_report(str(root))["markdown"]
  assert "No paired oracle and standard runs" in md
  # The oracle: +6, +8, +10 on perturb1 (mean 8, std 2: [3.03, 12.97]); a tie elsewhere.
  for s, gain in zip((0, 1, 2), (6.0, 8.0, 10.0)):
    base = 50.0 + 2 * s
    acc = {c: base for c in COLUMNS}
    acc["perturb1"] = base + gain
    acc["noise_0.2"] = base + (1.0, -1.0, 0.0)[s]
    _write(root, "oracle", s, acc)
  out = report.write_report(str(root))
  effect = out["effect"]
  assert effect["visible"] == ["perturb1"] and effect["n"] == 3
  assert effect["columns"]["perturb1"]["low"] == pytest.approx(8.0 - 4.968275, rel=1e-4)
  md = out["markdown"]
  section = md[md.index("## Can this protocol see an effect?"):md.index("## cnn8")]
  assert "perturb1 +8.0 [3.0, 13.0]" in section
  assert "on 1 of 5 perturbed columns (perturb1)" in section     # clean and noise_0 excluded
  assert "noise_0 " not in section
  assert md.index("## Can this protocol see an effect?") < md.index("## Verdicts against")
  # Marked as a control wherever it appears, and never given a verdict against the paper.
  assert f"| {report.ORACLE_LABEL} | 3 |" in md
  assert f"| {report.ORACLE_LABEL} - standard | 3 |" in md
  assert all(v["variant"] != "oracle" for v in out["verdicts"])
  assert (root / "report" / "differences.png").stat().st_size > 1000
  # A variant's final-policy grid at its lowest seed is copied beside the figures.
  for s in (0, 1):
    (root / "eriep" / f"seed_{s}" / "final_policy_grid.png").write_bytes(b"png %d" % s)
  files = report.write_report(str(root))["files"]
  assert files["final_policy_eriep_seed0"] == "final_policy_eriep_seed0.png"
  assert (root / "report" / "final_policy_eriep_seed0.png").read_bytes() == b"png 0"
  assert "final_policy_eriep_seed1" not in files
  # An oracle that gains nothing: the report says the protocol cannot see an effect.
  flat = tmp_path / "flat"
  flat.mkdir()
  for s in (0, 1, 2):
    acc = {c: 50.0 + s for c in COLUMNS}
    _write(flat, "standard", s, acc)
    _write(flat, "oracle", s, {c: v + (0.5, -0.5, 0.0)[s] for c, v in acc.items()})
  single = tmp_path / "single"
  single.mkdir()
  _write(single, "standard", 0, {c: 50.0 for c in COLUMNS})
  _write(single, "oracle", 0, {c: 60.0 for c in COLUMNS})
  md = report.write_report(str(single))["markdown"]
  assert "1 seed, points" in md and "With one seed there is no interval yet" in md
  assert "cannot see a robustness effect" not in md
  out = report.write_report(str(flat))
  assert out["effect"]["visible"] == []
  assert "this protocol cannot see a robustness effect even where one is built in" in \
      out["markdown"]


def test_the_first_and_second_editions_side_by_side(tmp_path):
  old, new = tmp_path / "v1", tmp_path / "v2"
  for root in (old, new):
    root.mkdir()
  _write(old, "standard", 0, {"clean": 70.0, "perturb1": 50.0})
  _write(old, "eriep", 0, {"clean": 71.0, "perturb1": 52.5})
  _write(old, "eriep", 1, {"clean": 69.0, "perturb1": 51.0})     # not in v2: left out
  _write(new, "eriep", 0, {"clean": 72.25, "perturb1": 50.0, "perturb2": 40.0})
  _write(new, "standard", 0, {"clean": 70.0, "perturb1": 49.5})
  _write(new, "jsd", 0, {"clean": 68.0, "perturb1": 55.0})         # not in v1: left out
  rows = report.compare_editions(report.collect(str(old)), report.collect(str(new)))
  assert [(r["variant"], r["seed"]) for r in rows] == [("eriep", 0), ("standard", 0)]
  assert rows[0]["change"] == {"clean": 1.25, "perturb1": -2.5}     # perturb2 is v2-only
  assert rows[1]["old"] == {"clean": 70.0, "perturb1": 50.0}
  assert rows[1]["change"]["perturb1"] == pytest.approx(-0.5)

  config = ml_collections.ConfigDict({"report_compare_with": str(old), "model": {"name": "cnn8"},
                                      "policy": {"source": "init"}})
  md = report.write_report(str(new), config=config)["markdown"]
  assert "## Against the first edition" in md
  assert "| cnn8 eriep seed 0 | 71.00 -> 72.25 (+1.25) | 52.50 -> 50.00 (-2.50) |" in md


def test_without_matplotlib_the_report_keeps_its_tables_and_draws_nothing(tmp_path, monkeypatch):
  # The project's GPU machine has no matplotlib: the report must still be written.
  with_plots = report.write_report(str(_sweep(tmp_path / "a")))
  assert "fig2" in with_plots["files"] and (tmp_path / "a" / "report" / "fig2_noise.png").exists()
  monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
  assert not report.can_plot()
  out = report.write_report(str(_sweep(tmp_path / "b")))
  assert out["files"] == {} or not any(f.endswith(".png") for f in out["files"].values())
  assert not list((tmp_path / "b" / "report").glob("*.png"))
  assert out["verdicts"] == with_plots["verdicts"] and "![" not in out["markdown"]
