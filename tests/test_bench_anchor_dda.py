"""bench/anchor_dda.py: without PyTorch, kornia or a dda checkout it stops with one sentence."""

import sys
import types

import pytest

from bench import anchor_dda


def test_missing_torch_kornia_or_checkout_is_one_sentence(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)      # import torch raises ImportError
  with pytest.raises(SystemExit, match=r"^bench.anchor_dda needs PyTorch: pip install torch"):
    anchor_dda._load_dda(str(tmp_path))
  monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
  monkeypatch.setitem(sys.modules, "kornia", None)
  with pytest.raises(SystemExit, match=r"needs kornia .*pip install kornia==0.5.11\.$"):
    anchor_dda._load_dda(str(tmp_path))
  monkeypatch.setitem(sys.modules, "kornia", types.ModuleType("kornia"))
  with pytest.raises(SystemExit, match=r"is not a checkout of moskomule/dda .*git clone"):
    anchor_dda._load_dda(str(tmp_path))
  with pytest.raises(SystemExit, match=r"--dda='' is not a checkout"):
    anchor_dda._load_dda("")
