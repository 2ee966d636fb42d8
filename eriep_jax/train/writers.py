"""Metric writers: CLU's default writer (console + TensorBoard) when available.

CLU's ``metric_writers`` imports the ``tensorboard`` package at import time.
Where that package is absent (it is not a dependency of tensorflow-cpu), a
minimal writer with the same ``write_scalars`` / ``flush`` / ``close`` methods
logs to the console through absl and writes TensorBoard scalar events with
``tf.summary.write`` (TensorFlow core only), so TensorBoard still reads them.
"""

import os
from typing import Any, Mapping

from absl import logging

__all__ = ["create_writer"]


class _FallbackWriter:
  """Console + TensorBoard event-file scalars without the tensorboard package."""

  def __init__(self, logdir: str, *, just_logging: bool = False):
    self._tf_writer = None
    if not just_logging:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
      tf.config.set_visible_devices([], "GPU")
      self._tf = tf
      self._metadata = summary_pb2.SummaryMetadata()
      self._metadata.plugin_data.plugin_name = "scalars"
      self._tf_writer = tf.summary.create_file_writer(os.path.join(logdir, "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in scalars.items()))
    if self._tf_writer is not None:
      with self._tf_writer.as_default():
        for k, v in scalars.items():
          self._tf.summary.write(k, self._tf.constant(float(v), self._tf.float32), step=step,
                                 metadata=self._metadata)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("hparams: %s", dict(hparams))

  def flush(self) -> None:
    if self._tf_writer is not None:
      self._tf_writer.flush()

  def close(self) -> None:
    if self._tf_writer is not None:
      self._tf_writer.close()


def create_writer(logdir: str, *, just_logging: bool = False):
  """CLU ``create_default_writer`` or, without tensorboard, the fallback above."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _FallbackWriter(logdir, just_logging=just_logging)
  return metric_writers.create_default_writer(logdir, just_logging=just_logging)
