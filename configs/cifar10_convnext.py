r"""CIFAR-10, ConvNeXt-T at 224x224 (Table 3, fourth column): standard vs ERIEP.

  python launch.py --config=configs/cifar10_convnext.py --workdir=/ckpt/c10_convnext
  python launch.py --config=configs/cifar10_convnext.py:runlocal --workdir=/tmp/c10_cnx

Paper (Table 3, top-1 %): standard 80.71 clean / 38.98 / 38.80 / 46.23 (perturb-1/2/3);
ERIEP 82.21 / 42.01 / 40.51 / 52.14.
Protocol: Adam 1e-3, 50 epochs, batch 128; "we resized CIFAR-10 images to 224x224 before
training" (Section 4.2), so data.image_size = 224 (the EPM and the evaluation perturbations
then act on 224x224 images). Expected runtime: ~10 h on one modern GPU (ConvNeXt-T at
224 px, 2 forward + 1.7 backward passes per step); runlocal keeps 32x32 images (the
resize would dominate a CPU run) and a 1/16-width model, ~5 min on a 2-core CPU.
alpha and sync_freq: see configs/cifar10_cnn8.py.
"""

from configs import cifar10_cnn8
from configs import common


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg)
  c = cifar10_cnn8.get_config(",".join(flags - {"runlocal"}))
  c.model.name = "convnext_tiny"
  c.data.image_size = 224
  if "runlocal" in flags:
    common.use_cifar10_folder(c)
    common.runlocal(c, width=0.0625, steps=60, batch_size=16)
    c.data.image_size = None
    c.eval.corruptions = ()   # runlocal: a few CPU minutes
  return c
