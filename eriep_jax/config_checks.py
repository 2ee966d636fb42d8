"""Every config check, in one place: stage 2 (``check_config``) and stage 1 (``check_search_config``).

Each raises one ``ValueError`` sentence that names the bad value and the fix,
before any compute or any file is written. Each check lives beside the stage it
checks (``eriep_jax.train.checks``, ``eriep_jax.search.checks``), which calls it
itself; this module, at the job layer, gathers them for the job and for users.
"""

from eriep_jax.search.checks import check_search_config
from eriep_jax.train.checks import check_config

__all__ = ["check_config", "check_search_config"]
