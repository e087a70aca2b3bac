"""ImageNet weights for an smp encoder taking the 6-channel pair stack (chapter 9).

segmentation_models_pytorch downloads encoder weights itself; the models here are built with
``encoder_weights=None`` and this file loads the weights under the one policy of
``common.pretrained_state``, so ``weights="none"`` never touches the network.
"""

from __future__ import annotations

from bgnet_lite.methods.common import pretrained_state


def smp_encoder_state(encoder_name: str, weights: str, in_channels: int = 6,
                      output_stride: int = 32) -> dict | None:
    """The state dict of smp's ImageNet ``encoder_name`` with an ``in_channels`` first conv
    (smp repeats the RGB kernel and rescales it, as ``common.widen_first_conv`` does), or None
    under the weights policy (chapter 9)."""

    def load() -> dict:
        from segmentation_models_pytorch.encoders import get_encoder

        encoder = get_encoder(encoder_name, in_channels=in_channels, weights="imagenet",
                              output_stride=output_stride)
        return encoder.state_dict()

    return pretrained_state(f"ImageNet smp {encoder_name}", weights, load,
                            "segmentation_models_pytorch downloads them from the Hugging Face "
                            f"hub (e.g. smp-hub/{encoder_name}.imagenet) into its cache "
                            "(HF_HOME); fill that cache on a machine online")
