"""edgeres: take a ResNet from training to an edge device with INT8 accuracy intact."""

__version__ = "0.1.0"
