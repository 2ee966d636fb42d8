"""Metric writers: CLU's default writer, console + TensorBoard.

One place that builds the writer for stage 1 and stage 2, so both log the same
way: scalars go to the console (absl logging) and to TensorBoard event files
under ``<logdir>``. Processes other than the first only log.
"""

from clu import metric_writers

__all__ = ["create_writer"]


def create_writer(logdir: str, *, just_logging: bool = False) -> metric_writers.MetricWriter:
  """CLU's ``create_default_writer`` (console + TensorBoard under ``logdir``)."""
  return metric_writers.create_default_writer(logdir, just_logging=just_logging)
