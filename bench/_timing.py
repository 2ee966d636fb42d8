"""Timing helpers shared by the benchmark scripts."""

import os
import platform
import statistics
import time

import jax


def median_time(fn, *args, repeats: int) -> float:
  """Seconds per call of ``fn(*args)``: one warm-up (compile) call, then the median of ``repeats``."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def machine_label(label: str = "") -> str:
  """One line naming JAX's default device and the host, plus an optional label."""
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  text = (f"device: {device.platform} ({kind}), {jax.device_count()} device(s); host: "
          f"{platform.machine()}, {os.cpu_count()} CPU cores")
  return f"{text}; {label}" if label else text
