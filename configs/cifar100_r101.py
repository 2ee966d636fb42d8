r"""CIFAR-100, ResNet-101 (Table 4): cross-entropy vs ERIEP, and the SupCon and UniCL baselines.

  python launch.py --config=configs/cifar100_r101.py --workdir=/ckpt/c100_r101
  # --config.method=standard|eriep|supcon|unicl (and jsd), one workdir each:
  python launch.py --config=configs/cifar100_r101.py --workdir=/ckpt/c100_r101_supcon \
      --config.method=supcon
  python launch.py --config=configs/cifar100_r101.py:runlocal --workdir=/tmp/c100_r101

Paper (Table 4, top-1 %): cross-entropy 78.8, ERIEP 83.2 (SupCon 79.6, UniCL 81.4).
Protocol and optimizer choice (SGD momentum 0.9, lr 0.1, x0.1 at 60%/80%, 200 epochs):
see configs/cifar100_r50.py. Expected runtime: ~18 h on one modern GPU; runlocal ~6 min
on a 2-core CPU (needs the TFDS cifar100 data on disk).
"""

from configs import cifar100_r50
from configs import common


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg)
  c = cifar100_r50.get_config(",".join(flags - {"runlocal"}))
  c.model.name = "resnet101"
  if "runlocal" in flags:
    common.runlocal(c, width=0.0625, steps=40, batch_size=32)
  return c
