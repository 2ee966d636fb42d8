r"""ImageNet-1K, ResNet-101 (Table 4): cross-entropy vs ERIEP, and the SupCon and UniCL baselines.

  python launch.py --config=configs/imagenet_r101.py --workdir=/ckpt/in_r101
  # --config.method=standard|eriep|supcon|unicl (and jsd), one workdir each:
  python launch.py --config=configs/imagenet_r101.py --workdir=/ckpt/in_r101_supcon \
      --config.method=supcon
  python launch.py --config=configs/imagenet_r101.py:runlocal --workdir=/tmp/in_r101

Paper (Table 4, top-1 %): cross-entropy 79.8, ERIEP 83.6 (SupCon 80.2, UniCL 79.9).
Protocol and optimizer choice (SGD momentum 0.9, lr 0.1, x0.1 at 60%/80%, 90 epochs):
see configs/imagenet_r50.py. Expected runtime: ~50 h on 8 modern GPUs; runlocal ~6 min on
a 2-core CPU (needs the TFDS imagenet2012 data on disk).
"""

from configs import common
from configs import imagenet_r50


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg)
  c = imagenet_r50.get_config(",".join(flags - {"runlocal"}))
  c.model.name = "resnet101"
  if "runlocal" in flags:
    common.runlocal(c, width=0.0625, steps=20, batch_size=16, num_train_examples=2000)
    c.data.image_size = 64
  return c
