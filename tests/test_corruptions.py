"""Tests for eriep_jax.evaluate.corruptions (CIFAR-10-C through TFDS)."""

import json
import logging
import math
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import default
from eriep_jax import models
from eriep_jax.evaluate import corruptions
from eriep_jax.evaluate import report as report_lib

import tiny

# TFDS's config prefixes, in the paper's order (glass_blur and elastic_transform differ).
_TFDS_COMMON = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "frosted_glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic",
    "pixelate", "jpeg_compression")


def _config(value, *, severities=(1, 2, 3, 4, 5), data_dir=None):
  c = tiny.data_config()   # the default data (TFDS CIFAR-10): corruptions fall back to its dir
  c.eval.corruptions = value
  c.eval.corruption_severities = severities
  c.eval.corruptions_data_dir = data_dir
  c.eval_batch_size = 4
  return c


def test_corruption_sets_off_all_and_tuple():
  assert corruptions.corruption_sets(default.get_config()) == ()   # the default is off
  assert corruptions.corruption_sets(_config(None)) == ()
  assert corruptions.corruption_sets(_config(())) == ()
  every = corruptions.corruption_sets(_config("all"))
  assert every == tuple(f"cifar10_corrupted/{c}_{s}" for c in _TFDS_COMMON for s in range(1, 6))
  assert len(every) == 75 and every[:2] == ("cifar10_corrupted/gaussian_noise_1",
                                            "cifar10_corrupted/gaussian_noise_2")
  # Every name is a real TFDS config (all 19 corruptions x 5 = TFDS's 95).
  tfds_configs = {b.name for b in tfds.builder_cls("cifar10_corrupted").BUILDER_CONFIGS}
  every19 = corruptions.corruption_sets(
      _config(corruptions.COMMON_CORRUPTIONS + corruptions.EXTRA_CORRUPTIONS))
  assert {n.split("/")[1] for n in every19} == tfds_configs and len(tfds_configs) == 95
  # A tuple keeps its order; severities come out ascending; TFDS aliases map back.
  assert corruptions.corruption_sets(
      _config(("speckle_noise", "glass_blur", "frosted_glass_blur"), severities=(5, 2))) == (
          "cifar10_corrupted/speckle_noise_2", "cifar10_corrupted/speckle_noise_5",
          "cifar10_corrupted/frosted_glass_blur_2", "cifar10_corrupted/frosted_glass_blur_5")
  with pytest.raises(ValueError, match=r"unknown corruption 'gausian_noise'.*'gaussian_noise'"):
    corruptions.corruption_sets(_config(("gausian_noise",)))
  with pytest.raises(ValueError, match=r"corruption_severities=\(1, 6\).*\(1, 2, 3, 4, 5\)"):
    corruptions.corruption_sets(_config("all", severities=(1, 6)))
  with pytest.raises(ValueError, match=r"eval.corruptions=3 must be"):
    corruptions.corruption_sets(_config(3))


def test_missing_data_all_raises_and_auto_skips(tmp_path, caplog):
  empty = str(tmp_path / "tfds")
  with pytest.raises(FileNotFoundError) as e:
    corruptions.check_corruptions(_config("all", data_dir=empty))
  msg = str(e.value)
  assert ("TFDS data set 'cifar10_corrupted/gaussian_noise_1' is not prepared under "
          f"data_dir={empty!r}") in msg and "corruptions_data_dir" in msg
  # None falls back to data.data_dir for TFDS data.
  c = _config(("fog",), data_dir=None)
  c.data.data_dir = empty
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"'cifar10_corrupted/fog_1' is not prepared under data_dir={empty!r}")):
    corruptions.check_corruptions(c)
  # 'auto': validated, never raises, evaluates nothing; one INFO line says how to prepare.
  caplog.set_level(logging.INFO)
  auto = _config("auto", data_dir=empty)
  corruptions.check_corruptions(auto)
  assert corruptions.corruption_sets(auto) == ()
  assert corruptions.corruption_sweep(auto, model=None, variables=None) == {}
  lines = [r.getMessage() for r in caplog.records
           if "CIFAR-10-C evaluation skipped" in r.getMessage()]
  assert len(lines) == 2 and "tfds build cifar10_corrupted --data_dir=DIR" in lines[0]
  assert empty in lines[0]


def _fake_set(name, predict):
  """Images of one mocked set; the first k labels are the model's predictions, the rest not."""
  seed = zlib.crc32(name.encode())
  rng = np.random.default_rng(seed)
  n = 5 + seed % 6                       # 5..10 images, so the sets differ in size
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  pred = predict(images)
  k = int(rng.integers(0, n + 1))
  labels = np.where(np.arange(n) < k, pred, (pred + 1 + rng.integers(0, 9, n)) % 10)
  return images, labels.astype(np.int64)


def test_corruption_sweep_end_to_end_with_mock_data(tmp_path):
  model = models.get_model("cnn4", 10, width=0.0625)
  # An init that predicts class 0 on a zero image: the padding (zero images, label 0)
  # would then count as correct if the mask were ignored.
  zeros = jnp.zeros((1, 32, 32, 3))
  for seed in range(100):
    variables = model.init(jax.random.key(seed), zeros, train=False)
    if int(jnp.argmax(model.apply(variables, zeros, train=False), -1)[0]) == 0:
      break
  else:
    raise AssertionError("no init of the 100 predicts class 0 on a zero image")
  apply = jax.jit(lambda x: jnp.argmax(model.apply(variables, x, train=False), -1))

  def predict(images):   # the pipeline's uint8 -> float32 [0, 1]
    return np.asarray(apply(images.astype(np.float32) / np.float32(255.0)))

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del split, decoders, read_config, shuffle_files
    images, labels = _fake_set(self.builder_config.name, predict)
    encoded = [tf.io.encode_png(x).numpy() for x in images]   # the pipeline skips decoding
    ds = tf.data.Dataset.from_tensor_slices({"image": encoded, "label": labels})
    return ds.apply(tf.data.experimental.assert_cardinality(len(labels)))

  c = _config(("fog", "glass_blur"), severities=(2, 5), data_dir=str(tmp_path / "tfds"))
  c.data.source, c.data.root = "folder", "/nonexistent"   # corruptions read TFDS regardless
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    corruptions.check_corruptions(c)
    out = corruptions.corruption_sweep(c, model=model, variables=variables)

  expected_correct, expected_n = {}, {}
  for key, tfds_config in [("fog_2", "fog_2"), ("fog_5", "fog_5"),
                           ("glass_blur_2", "frosted_glass_blur_2"),
                           ("glass_blur_5", "frosted_glass_blur_5")]:
    images, labels = _fake_set(tfds_config, predict)
    expected_correct[key] = int(np.sum(predict(images) == labels))   # the hand count
    expected_n[key] = len(labels)
  assert out["correct"] == expected_correct and out["num_examples"] == expected_n
  assert len(set(expected_n.values())) > 1   # the sets really differ
  assert any(n % c.eval_batch_size for n in expected_n.values())   # and some are padded
  acc = {k: 100.0 * expected_correct[k] / expected_n[k] for k in expected_n}
  assert out["accuracy"] == pytest.approx(acc, abs=1e-12)
  assert out["per_corruption"] == pytest.approx(
      {"fog": np.mean([acc["fog_2"], acc["fog_5"]]),
       "glass_blur": np.mean([acc["glass_blur_2"], acc["glass_blur_5"]])}, abs=1e-12)
  assert out["mean_accuracy"] == pytest.approx(np.mean(list(acc.values())), abs=1e-12)
  assert out["mean_error"] == pytest.approx(100.0 - np.mean(list(acc.values())), abs=1e-12)
  assert out["mean_over"] == {"corruptions": ["fog", "glass_blur"], "severities": [2, 5]}
  # One compiled counting step served all four sets.
  assert len(corruptions._COUNT_STEPS) == 1


def test_relative_corruption_errors_by_hand():
  model = {"fog_1": 90.0, "fog_2": 80.0, "speckle_noise_1": 70.0, "speckle_noise_2": 60.0}
  base = {"accuracy": {"fog_1": 80.0, "fog_2": 60.0, "speckle_noise_1": 50.0,
                       "speckle_noise_2": 40.0, "snow_1": 1.0}}
  # Errors: model fog 10, 20; speckle 30, 40; clean 5.  Base fog 20, 40; speckle 50, 60; clean 10.
  # ce_fog = 100 * (10 + 20) / (20 + 40) = 50;  ce_speckle = 100 * 70 / 110 = 63.63...
  # rce_fog = 100 * (5 + 15) / (10 + 30) = 50;  rce_speckle = 100 * (25 + 35) / (40 + 50) = 66.66...
  # fog is the only common corruption: mce = 50, relative mce = 50.
  out = corruptions.relative_corruption_errors(model, 95.0, base, 90.0)
  assert out["ce"] == pytest.approx({"fog": 50.0, "speckle_noise": 7000.0 / 110.0}, abs=1e-12)
  assert out["rce"] == pytest.approx({"fog": 50.0, "speckle_noise": 6000.0 / 90.0}, abs=1e-12)
  assert out["mce"] == pytest.approx(50.0) and out["relative_mce"] == pytest.approx(50.0)
  assert out["mean_over"] == ["fog"]
  # A baseline no worse on fog than on clean images: relative CE's denominator is
  # (20 - 20) + (20 - 20) = 0 -> NaN, while ce stays 100 * 30 / 40 = 75.
  flat = corruptions.relative_corruption_errors(model, 95.0, {"fog_1": 80.0, "fog_2": 80.0,
                                                              "speckle_noise_1": 50.0,
                                                              "speckle_noise_2": 40.0}, 80.0)
  assert math.isnan(flat["rce"]["fog"]) and math.isnan(flat["relative_mce"])
  assert flat["ce"]["fog"] == pytest.approx(75.0)
  # A perfect baseline: ce's denominator is 0 -> NaN.
  perfect = corruptions.relative_corruption_errors({"fog_1": 90.0}, 95.0, {"fog_1": 100.0}, 100.0)
  assert math.isnan(perfect["ce"]["fog"]) and math.isnan(perfect["mce"])
  with pytest.raises(ValueError, match=r"baseline_results lacks \['fog_2'\]"):
    corruptions.relative_corruption_errors(model, 95.0, {"fog_1": 80.0}, 90.0)
  with pytest.raises(ValueError, match=r"clean_accuracy=120.0 must be .* in percent"):
    corruptions.relative_corruption_errors(model, 120.0, base, 90.0)


def _job_config(value, data_dir):
  c = tiny.job(num_train_steps=2, eval_batch_size=8)
  c.eval.corruptions = value
  c.eval.corruption_severities = (1, 3)
  c.eval.corruptions_data_dir = data_dir
  c.policy.source = "init"
  c.compare_methods = ("standard", "augment")   # augment: the cheapest second method to compile
  c.seeds = (0,)
  return c


def test_the_job_refuses_missing_data_before_training(tmp_path):
  from eriep_jax import experiment  # pylint: disable=g-import-not-at-top
  wd = tmp_path / "wd"
  with pytest.raises(FileNotFoundError, match="is not prepared"):
    experiment.run(_job_config("all", str(tmp_path / "empty")), str(wd))
  assert not wd.exists()   # nothing trained, nothing written


def test_the_job_scores_cifar10_c_and_reports_errors_against_standard(tmp_path):
  from eriep_jax import experiment  # pylint: disable=g-import-not-at-top
  wd = tmp_path / "wd"
  with tfds.testing.mock_data(num_examples=11):
    out = experiment.run(_job_config(("fog", "contrast"), str(tmp_path / "tfds")), str(wd))
  runs = {v: out[str(wd / v / "seed_0")] for v in ("standard", "augment")}
  for r in runs.values():
    c10c = r["corruptions"]
    assert sorted(c10c["accuracy"]) == ["contrast_1", "contrast_3", "fog_1", "fog_3"]
    assert set(c10c["num_examples"].values()) == {11}
    assert c10c["mean_accuracy"] == pytest.approx(np.mean(list(c10c["accuracy"].values())))
  # The report's errors against standard, by hand: E = 100 - accuracy.
  report = json.loads((wd / "report" / "report.json").read_text())
  stats = report["summary"]["models"]["cnn4"]["metric_stats"]
  assert stats["standard"]["c10c_mce"]["mean"] == pytest.approx(100.0)
  e, s = runs["augment"]["corruptions"]["accuracy"], runs["standard"]["corruptions"]["accuracy"]
  ce = [sum(100 - e[f"{c}_{k}"] for k in (1, 3)) / sum(100 - s[f"{c}_{k}"] for k in (1, 3))
        for c in ("fog", "contrast")]
  assert stats["augment"]["c10c_mce"]["mean"] == pytest.approx(100 * np.mean(ce))
  assert stats["augment"]["c10c_mean_accuracy"]["mean"] == pytest.approx(
      runs["augment"]["corruptions"]["mean_accuracy"])
  # The mock runs can score alike (often 0% everywhere, so every ratio above reads 100 and
  # a report that scored each run against itself would pass). Give the two runs' files
  # distinct scores and rebuild the summary from them: the _STANDARD / _AUGMENT figures.
  for v, (clean, acc) in {"standard": _STANDARD, "augment": _AUGMENT}.items():
    path = wd / v / "seed_0" / "eval" / "results.json"
    r = json.loads(path.read_text())
    r["accuracy"]["clean"], r["corruptions"]["accuracy"] = clean, acc
    path.write_text(json.dumps(r))
  stats = report_lib.summarize(report_lib.collect(str(wd)))["models"]["cnn4"]["metric_stats"]
  assert stats["standard"]["c10c_mce"]["mean"] == pytest.approx(100.0)
  assert stats["standard"]["c10c_relative_mce"]["mean"] == pytest.approx(100.0)
  assert stats["augment"]["c10c_mce"]["mean"] == pytest.approx(_AUGMENT_MCE)
  assert stats["augment"]["c10c_relative_mce"]["mean"] == pytest.approx(_AUGMENT_RELATIVE_MCE)


# Hand-made runs: (clean accuracy, CIFAR-10-C accuracies), all in %. With E = 100 - accuracy,
# standard: E_clean 10, fog E 20 + 40 = 60, contrast E 10 + 30 = 40;
# augment:  E_clean 8,  fog E 15 + 25 = 40, contrast E 8 + 22 = 30.
_STANDARD = (90.0, {"fog_1": 80.0, "fog_3": 60.0, "contrast_1": 90.0, "contrast_3": 70.0})
_AUGMENT = (92.0, {"fog_1": 85.0, "fog_3": 75.0, "contrast_1": 92.0, "contrast_3": 78.0})
# CE: fog 100 * 40 / 60 = 66.67, contrast 100 * 30 / 40 = 75; mCE 70.83.
_AUGMENT_MCE = (100 * 40 / 60 + 100 * 30 / 40) / 2
# Relative CE: fog 100 * (40 - 2 * 8) / (60 - 2 * 10) = 60, contrast 100 * (30 - 16) / (40 - 20)
# = 70; relative mCE 65. (Either run against itself: 100 and 100.)
_AUGMENT_RELATIVE_MCE = 65.0


def test_report_scores_each_run_against_the_standard_run_of_its_seed():
  # Seed 1's standard run has more error: E fog 30 + 50 = 80, contrast 20 + 40 = 60, clean 10.
  standard_1 = (90.0, {"fog_1": 70.0, "fog_3": 50.0, "contrast_1": 80.0, "contrast_3": 60.0})
  runs = {("standard", 0): _STANDARD, ("augment", 0): _AUGMENT,
          ("standard", 1): standard_1, ("augment", 1): _AUGMENT}
  results = [{"model": "cnn4", "variant": v, "seed": seed, "accuracy": {"clean": clean},
              "corruptions": {"accuracy": acc, "mean_accuracy": np.mean(list(acc.values()))}}
             for (v, seed), (clean, acc) in runs.items()]
  m = report_lib.run_metrics(results[1], results[0])
  assert m["c10c_mce"] == pytest.approx(_AUGMENT_MCE)
  assert m["c10c_relative_mce"] == pytest.approx(_AUGMENT_RELATIVE_MCE)
  assert m["c10c_mean_accuracy"] == pytest.approx(82.5)   # (85 + 75 + 92 + 78) / 4
  assert "c10c_mce" not in report_lib.run_metrics(results[1])   # no standard run: no ratio
  # Seed 1 against its own standard run: CE fog 100 * 40 / 80 = 50, contrast 100 * 30 / 60
  # = 50; relative CE fog 100 * 24 / 60 = 40, contrast 100 * 14 / 40 = 35.
  stats = report_lib.summarize(results)["models"]["cnn4"]["metric_stats"]
  assert stats["standard"]["c10c_mce"]["mean"] == pytest.approx(100.0)
  assert stats["augment"]["c10c_mce"]["mean"] == pytest.approx((_AUGMENT_MCE + 50.0) / 2)
  assert stats["augment"]["c10c_relative_mce"]["mean"] == pytest.approx(
      (_AUGMENT_RELATIVE_MCE + 37.5) / 2)
