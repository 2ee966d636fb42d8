"""Runs launch.py with TensorFlow and TFDS blocked from import (`import tensorflow` raises).

    python tests/launch_without_tensorflow.py --config=configs/demo.py --workdir=DIR ...

The machine without TensorFlow that the in-memory pipeline is for, on a machine that has
it: any import of TensorFlow on the way stops the job with ModuleNotFoundError.
"""

import pathlib
import runpy
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

for name in ("tensorflow", "tensorflow_datasets"):
  sys.modules[name] = None   # `import tensorflow` now raises ModuleNotFoundError

sys.path.insert(0, str(REPO))
sys.argv = [str(REPO / "launch.py")] + sys.argv[1:]
runpy.run_path(str(REPO / "launch.py"), run_name="__main__")
