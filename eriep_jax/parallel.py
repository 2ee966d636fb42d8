"""Placing pytrees on the local devices for ``jax.pmap``: the library's one way.

Every pmapped function of the library (the stage-2 step, the stage-1 step,
the evaluation sweep) takes its replicated arguments from ``replicate``, laid
out exactly as ``jax.pmap`` lays out its outputs (a mesh axis named
``'batch'``), so that feeding a step its own output never recompiles it.
"""

from typing import Any

import jax
import numpy as np

__all__ = ["AXIS_NAME", "replicate", "unreplicate"]

AXIS_NAME = "batch"


def replicate(tree: Any) -> Any:
  """Copies a host pytree to every local device, laid out as ``jax.pmap`` outputs are.

  The one way the library replicates state: ``flax.jax_utils.replicate``
  names its mesh axis differently from pmap's outputs, which makes the second
  pmap call compile the step again.
  """
  devices = jax.local_devices()
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), (AXIS_NAME,)),
                                        jax.sharding.PartitionSpec(AXIS_NAME))
  return jax.tree.map(
      lambda x: jax.device_put(np.stack([np.asarray(x)] * len(devices)), sharding), tree)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a replicated pytree, on the host."""
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))


