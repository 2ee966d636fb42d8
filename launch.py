r"""Runs an eriep_jax experiment: the whole job, a re-evaluation, a search or a report.

  python launch.py --config=configs/demo.py --workdir=/tmp/eriep_demo
  python launch.py --config=configs/cifar10_cnn8.py:runlocal --workdir=/tmp/cnn8 \
      --config.alpha=0.3
  python launch.py --config=configs/cifar10_cnn8.py --workdir=/tmp/cnn8 --mode=eval
  python launch.py --config=configs/cifar10_cpu.py --workdir=/tmp/study --mode=report
  python launch.py --config=configs/cifar10_cpu.py --workdir=/tmp/study --mode=gradcam

A rerun with the same --workdir resumes from its latest checkpoint. For several
hosts, start one process per host with --distributed (see README). --verbose
prints every metric window and info line as well.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.DEFINE_bool("verbose", False,
                  "Also print every logged metric window and info line (absl INFO) and the "
                  "TensorFlow/XLA start-up lines. By default the console holds the progress "
                  "bars, tables, health reports and warnings; the metrics are in TensorBoard "
                  "and <workdir>/history.jsonl either way.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "search", "report", "gradcam"],
                  "train: Algorithm 1 end to end (search if the policy source says so, "
                  "every method and seed, evaluation, report); eval: re-evaluate the trained "
                  "runs; search: stage 1 (the EPM policy) only; report: the report from the "
                  "finished runs; gradcam: the Fig. 4 Grad-CAM panel and every run's CAM-stability "
                  "score.")
flags.DEFINE_bool("distributed", False,
                  "Call jax.distributed.initialize() first (multi-host runs). On SLURM, Open MPI or "
                  "Cloud TPU it finds the cluster itself; elsewhere pass the three flags below.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Total number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  try:
    _run(argv)
  except (ValueError, TypeError, FileNotFoundError) as e:
    # Bad input (config, data, policy path) is reported as its one sentence;
    # --verbosity=1 shows the traceback too.
    logging.debug("traceback:", exc_info=True)
    raise SystemExit(f"error: {e}") from None


def _run(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; pass options as --config.field=value.")
  # Before TensorFlow and the JAX backends start: their INFO lines only with --verbose.
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  if FLAGS.distributed:
    import jax  # pylint: disable=g-import-not-at-top
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  # TensorFlow is imported only by runs whose data pipeline is tf.data (quietly, and kept
  # off the accelerators: eriep_jax.data.sources.tf_module); memory-pipeline runs never load it.
  from eriep_jax.data import sources  # pylint: disable=g-import-not-at-top
  sources.QUIET_TENSORFLOW_IMPORT = not FLAGS.verbose
  # Keep the console to our metrics and progress: orbax logs every save at INFO.
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in r.pathname)
  from eriep_jax import experiment  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  if FLAGS.mode == "search":
    experiment.search.run_search(config, FLAGS.workdir)
  elif FLAGS.mode == "eval":
    experiment.evaluate_workdir(config, FLAGS.workdir)
  elif FLAGS.mode == "gradcam":
    summary = experiment.gradcam_workdir(config, FLAGS.workdir)
    print(f"wrote {summary['panel']} and gradcam/cam_stability.json in {FLAGS.workdir}",
          flush=True)
  elif FLAGS.mode == "report":
    print(experiment.build_report(config, FLAGS.workdir)["markdown"], flush=True)
  else:
    experiment.run(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
