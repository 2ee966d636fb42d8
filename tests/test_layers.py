"""The package's layers: imports go down, never up or sideways, and private names stay home.

Every module of eriep_jax is read with `ast` (imports inside functions included) and placed in
a layer; a module may import its own package's modules and modules of lower layers only. Two
packages of one layer (stage 1's `search` and stage 2's `train`) may not import each other.
A name starting with `_` (a private module or attribute) may be imported only within its own
package. `KNOWN` lists the crossings that are still to be removed, each with its reason, so that
the test fails on any new one and on a known one that is gone (then delete its line).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "eriep_jax"

# Lowest first. A unit is a top-level module or subpackage of eriep_jax.
LAYERS = (
    ("_lazy", "rng", "images", "parallel"),            # shared helpers, no eriep_jax imports
    ("ops", "models", "losses"),                        # Table 1's ops, the networks, Eq. 3-9
    ("policy", "data"),                                 # the EPM and its files; the input pipelines
    ("evaluate", "writers"),                            # scoring, logging
    ("search", "train"),                                # stage 1, stage 2 (each with its checks)
    ("config_checks",),                                 # both stages' checks in one place
    ("study",),                                         # a study workdir's layout
    ("rescore",),                                       # --mode=eval and --mode=gradcam
    ("experiment",),                                    # the job
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}

# (importer unit, imported module): crossings still to be removed.
KNOWN = set()   # none left; a crossing that must stay a while goes here, with its reason


def _imports(path: pathlib.Path, module: str) -> list[str]:
  """Every eriep_jax module or name that `path` imports (absolute or relative), anywhere in it."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  is_package = path.name == "__init__.py"
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [a.name for a in node.names if a.name.startswith("eriep_jax")]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:   # relative
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      if base.startswith("eriep_jax"):
        out += [f"{base}.{a.name}" for a in node.names]
  return out


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    yield path, ".".join(parts)


def _resolve(target: str) -> str:
  """The longest prefix of `target` that is a module or package of the tree."""
  parts = target.split(".")
  for n in range(len(parts), 1, -1):
    path = PACKAGE.parent.joinpath(*parts[:n])
    if path.is_dir() or path.with_suffix(".py").exists():
      return ".".join(parts[:n])
  return parts[0]


def _crossings() -> set[tuple[str, str]]:
  """(importer's unit, imported module) for every upward, sideways or private import."""
  found = set()
  for path, module in _modules():
    if module == "eriep_jax":
      continue
    unit = module.split(".")[1]
    assert unit in LAYER, f"{module} is in no layer; add {unit!r} to LAYERS"
    for raw in _imports(path, module):
      target = _resolve(raw)
      if target == "eriep_jax":
        continue
      target_unit = target.split(".")[1]
      if target_unit == unit or target_unit == "_lazy":
        continue   # a package's own modules (private ones too); every package's lazy exports
      private = any(p.startswith("_") for p in raw.split(".")[1:])
      if private or LAYER[target_unit] >= LAYER[unit]:
        found.add((unit, target))
  return found


def test_imports_only_go_down_and_private_names_stay_home():
  found = _crossings()
  new = sorted(found - KNOWN)
  gone = sorted(KNOWN - found)
  assert not new, ("upward, sideways or private imports (move the code to the layer that owns "
                   f"it): {new}")
  assert not gone, f"these known crossings are gone; delete them from KNOWN: {gone}"


def test_the_checker_sees_an_upward_and_a_sideways_import(tmp_path, monkeypatch):
  # A stand-in module in `ops` that imports `train`, and one in `search` that imports `train`.
  fake = tmp_path / "eriep_jax"
  (fake / "ops").mkdir(parents=True)
  (fake / "search").mkdir()
  (fake / "ops" / "bad.py").write_text("from eriep_jax.train import step\n")
  (fake / "search" / "bad.py").write_text("def f():\n  from eriep_jax.train import loop\n")
  (fake / "search" / "ok.py").write_text("from eriep_jax import policy\nfrom . import bad\n")
  (fake / "train").mkdir()
  (fake / "train" / "step.py").write_text("from eriep_jax.search import ok\n")   # sideways
  (fake / "train" / "loop.py").write_text("")
  (fake / "policy").mkdir()
  (fake / "policy" / "__init__.py").write_text("from eriep_jax.models import _common\n")
  (fake / "models").mkdir()
  (fake / "models" / "_common.py").write_text("")
  monkeypatch.setitem(globals(), "PACKAGE", fake)
  assert _crossings() == {("ops", "eriep_jax.train.step"),        # up
                          ("search", "eriep_jax.train.loop"),      # sideways, inside a function
                          ("train", "eriep_jax.search.ok"),        # sideways
                          ("policy", "eriep_jax.models._common")}  # another package's private


@pytest.mark.parametrize("unit", sorted(LAYER))
def test_every_layer_unit_exists(unit):
  assert (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").exists()
