"""examples/quickstart.ipynb runs top to bottom (nbclient), and its figures are what it says."""

import os
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs_and_its_models_learn(monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  # The kernel sees one CPU device, as a user's notebook does, not the suite's two fake
  # devices (with which the library's run pmaps over 2 shards: 83 s here against 60 s).
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # Executed in memory: the committed notebook (with its outputs) is left as it is.
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/jpeg" in o.get("data", {})]
  assert len(images) == 1   # the policy grid
  assert "expected images with values in [0, 1], got min 0 and max 255" in text
  # The plain loop's loss falls and N learns the digits (chance is 10%).
  losses = [float(x) for x in re.findall(r"step +\d+ +loss (\d+\.\d+)", text)]
  assert len(losses) == 6 and losses[-1] < 0.6 * losses[0], losses
  scores = re.findall(r"\{'clean': (\d+\.\d+), 'perturb1'", text)
  assert len(scores) == 2, text[-2000:]
  assert float(scores[0]) > 60.0
  # The restored library run is the 60-step one, and its policy moved in stage 2.
  moved = re.search(r"step 60 \| policy moved by (\d+\.\d+)", text)
  assert moved and float(moved.group(1)) > 0.0
  assert float(scores[1]) > 20.0
