"""VGG-16 with the paper's three-layer classifier head (Section 4.2).

The 13 conv layers of VGG-16 (configuration "D" of Simonyan and Zisserman,
2014), each a 3x3 conv with bias, BatchNorm (``batch_norm=True``, the default;
False gives the original BN-free VGG) and ReLU, with a 2x2 max-pool after each
of the five stages. The paper replaces VGG's 4096-wide classifier by three
linear layers 512-512, 512-256, 256-num_classes. At 32x32 input the map after
the fifth pool is 1x1x512, so global average pooling equals flattening there;
at other sizes GAP keeps the head at 512 inputs (our choice, as for cnn8).

The features returned for Grad-CAM are the last conv output (after BN and
ReLU), before the fifth max-pool: 2x2 at 32x32 input, 14x14 at 224x224.
"""

from eriep_jax.models.cnn import ConvNet

__all__ = ["VGG16_LAYERS", "ConvNet"]

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M")
