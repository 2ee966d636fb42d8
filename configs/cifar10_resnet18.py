r"""CIFAR-10, ResNet-18 (Table 3, third column): standard vs ERIEP.

  python launch.py --config=configs/cifar10_resnet18.py --workdir=/ckpt/c10_r18
  python launch.py --config=configs/cifar10_resnet18.py:runlocal --workdir=/tmp/c10_r18

Paper (Table 3, top-1 %): standard 78.13 clean / 31.34 / 34.43 / 48.69 (perturb-1/2/3);
ERIEP 80.21 / 35.41 / 39.07 / 50.11.
Protocol: as configs/cifar10_cnn8.py (Adam 1e-3, 50 epochs, batch 128), ResNet-18 with
the CIFAR stem (3x3 conv, no max-pool). Expected runtime: ~1 h on one modern GPU;
runlocal ~5 min on a 2-core CPU. alpha and sync_freq: see configs/cifar10_cnn8.py.
"""

from configs import cifar10_cnn8
from configs import common


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg)
  c = cifar10_cnn8.get_config(",".join(flags - {"runlocal"}))
  c.model.name = "resnet18"
  c.model.stem = "cifar"
  if "runlocal" in flags:
    common.use_cifar10_folder(c)
    common.runlocal(c, width=0.0625, steps=100)
    c.eval.corruptions = ()   # runlocal: a few CPU minutes
  return c
