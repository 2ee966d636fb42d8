r"""CIFAR-10, VGG-16 (Table 3, second column): standard vs ERIEP.

  python launch.py --config=configs/cifar10_vgg16.py --workdir=/ckpt/c10_vgg16
  python launch.py --config=configs/cifar10_vgg16.py:runlocal --workdir=/tmp/c10_vgg16

Paper (Table 3, top-1 %): standard 80.43 clean / 49.52 / 49.10 / 61.86 (perturb-1/2/3);
ERIEP 84.21 / 67.21 / 68.52 / 80.91.
Protocol: as configs/cifar10_cnn8.py (Adam 1e-3, 50 epochs, batch 128); VGG-16 with the
paper's 512-512, 512-256, 256-10 classifier. Expected runtime: ~40 min on one modern GPU;
runlocal ~4 min on a 2-core CPU. alpha and sync_freq: see configs/cifar10_cnn8.py.
"""

from configs import cifar10_cnn8
from configs import common


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg)
  c = cifar10_cnn8.get_config(",".join(flags - {"runlocal"}))
  c.model.name = "vgg16"
  if "runlocal" in flags:
    common.use_cifar10_folder(c)
    common.runlocal(c, width=0.0625)
    c.eval.corruptions = ()   # runlocal: a few CPU minutes
  return c
