"""BGNet (Chen et al. 2024), one paper concept per file (chapters 2-6).

``backbone`` (Siamese ResNet-18), ``position_encoding`` (eq. 9-10), ``attention`` (eq. 5-6,
11-12), ``matching`` (eq. 13-15), ``subtraction`` (eq. 8), ``fusion`` (the U-Net-like decoder),
``config`` and ``model``; ``deviations/`` holds the options the paper does not have.  The five
ablation variants are registered as ``bgnet-s1`` .. ``bgnet-s5``.
"""

from bgnet_lite.methods.bgnet.config import VARIANTS, BGNetConfig
from bgnet_lite.methods.bgnet.model import BGNet
from bgnet_lite.methods.registry import register_method

CITATION = ("Chen, Niu, Zhang, Zhang, Lin, Li: Feature Matching Driven Background "
            "Generalization Neural Networks for Surface Defect Segmentation, "
            "Knowledge-Based Systems 2024")
SUMMARIES = {
    "S1": "ablation S1: template and sample concatenated into one ResNet-18",
    "S2": "ablation S2: Siamese ResNet-18, sample minus template at five scales",
    "S3": "ablation S3: S2 + positional encoding and self/cross attention at 1/8 and 1/32",
    "S4": "ablation S4: S2 + matching and matched subtraction at 1/8 and 1/32",
    "S5": "BGNet: attention, matching and matched subtraction (ablation S5)",
}


def method_name(variant: str) -> str:
    """The registry name of ablation variant ``S1`` .. ``S5``: ``bgnet-s1`` .. (chapter 6)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return f"bgnet-{variant.lower()}"


for _variant in VARIANTS:
    register_method(
        method_name(_variant), family="Ours", citation=f"{CITATION}, Table 1",
        summary=SUMMARIES[_variant], options=BGNetConfig, fixed={"variant": _variant},
        paper_name="BGNet" if _variant == "S5" else None,
    )(BGNet)
