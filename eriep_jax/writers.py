"""Metric writers for stage 1 and stage 2: TensorBoard where TensorFlow is, the console everywhere.

One place that builds the writer, so both stages log the same way. With
``tensorboard=True`` it is CLU's ``create_default_writer``: scalars to the
console (absl logging) and to TensorBoard event files under ``<logdir>``.
CLU's TensorBoard writer needs TensorFlow, so runs without it (the in-memory
data pipeline, ``config.data.pipeline='memory'``, which never imports
TensorFlow) get `LoggingWriter`: the console only. Nothing is lost there: stage
2 keeps every metric window in ``<workdir>/history.jsonl`` and stage 1 its log
in ``search_results.json``, with either writer. Processes other than the first
only log.
"""

from typing import Any, Mapping

from absl import logging

__all__ = ["create_writer", "LoggingWriter"]


class LoggingWriter:
  """The MetricWriter calls the loops make, to absl logging (no TensorFlow)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(scalars.items()))
    logging.info("[%d] %s", step, values)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("[hparams] %s", ", ".join(f"{k}={v}" for k, v in sorted(hparams.items())))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def create_writer(logdir: str, *, just_logging: bool = False, tensorboard: bool = True):
  """CLU's default writer (console + TensorBoard under ``logdir``), or `LoggingWriter`.

  Args:
    logdir: where TensorBoard event files go.
    just_logging: console only (processes other than the first).
    tensorboard: write TensorBoard files (needs TensorFlow); False gives `LoggingWriter`.
  """
  if not tensorboard:
    return LoggingWriter()
  from eriep_jax.data import sources  # pylint: disable=g-import-not-at-top
  sources.tf_module()   # quietly, and with the GPUs hidden, before CLU imports it
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(logdir, just_logging=just_logging)
