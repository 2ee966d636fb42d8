"""Lazy attribute loading for package ``__init__`` modules (PEP 562).

The packages re-export names from submodules without importing them up front,
so ``import eriep_jax`` stays cheap and only the data pipeline pulls in
TensorFlow.
"""

import importlib
from typing import Any, Callable, Iterable, Mapping


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str],
                 submodules: Iterable[str]) -> tuple[list[str], Callable, Callable]:
  """Builds ``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

  Args:
    package: the package's ``__name__``.
    namespace: the package's ``globals()``; a resolved name is cached there.
    exports: public name -> submodule (relative to ``package``) defining it.
    submodules: submodule names that are themselves public attributes.

  Returns:
    ``(__all__, __getattr__, __dir__)`` to assign in the package; ``__all__``
    lists ``exports`` only.
  """
  submodules = tuple(submodules)
  names = sorted(list(exports) + list(submodules))

  def getattr_(name: str) -> Any:
    if name in exports:
      value = getattr(importlib.import_module(f".{exports[name]}", package), name)
    elif name in submodules:
      value = importlib.import_module(f".{name}", package)
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    namespace[name] = value
    return value

  def dir_() -> list[str]:
    return names

  # __all__ is the exported names; the submodules are attributes (and in dir()) too.
  return sorted(exports), getattr_, dir_
