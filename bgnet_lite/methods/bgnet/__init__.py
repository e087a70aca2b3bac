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


def describe_variant(variant: str, settings: dict | None = None,
                     variation: float | None = None, defaults: dict | None = None) -> str:
    """A run's name by what it is (chapters 7-8): ``("S5", {"match_loss": 0.1,
    "align_fine_scales": True, "local_match_px": 6.0})`` -> "S5 + matching loss 0.1 + aligned
    fine scales + local matching 6 px".  ``settings``: model options and training settings
    (a setting equal to its value in ``defaults`` is not named); ``variation``: the data's,
    shown first when given."""
    settings = dict(settings or {})
    defaults = defaults or {}
    parts = [variant]
    if settings.get("match_loss"):
        weight = settings["match_loss"]
        parts.append("matching loss" + ("" if weight == 1 else f" {weight:g}"))
    if settings.get("align_fine_scales"):
        parts.append("aligned fine scales")
    if settings.get("local_match_px"):
        parts.append(f"local matching {settings['local_match_px']:g} px")
    if settings.get("soft_match"):
        parts.append("soft matched subtraction")
    details = []
    for key, label in (("depth", "depth {}"), ("depth_8", "depth {}"), ("theta", "θ {}"),
                       ("temperature", "temperature {}"), ("lr", "lr {}"),
                       ("steps", "{} steps")):
        if key in settings and settings[key] != defaults.get(key):
            details.append(label.format(f"{settings[key]:g}"))
    if "attention_dim" in settings and settings["attention_dim"] is None:
        details.append("the earlier LoFTR widths")
    if settings.get("focal_alpha") == 0:
        details.append("the paper's loss (no α)")
    if settings.get("lr_schedule") == "cosine":
        details.append("cosine decay")
    text = " + ".join(parts) + (f" ({', '.join(details)})" if details else "")
    return text if variation is None else f"variation {variation:g}: {text}"


for _variant in VARIANTS:
    register_method(
        method_name(_variant), family="Ours", citation=f"{CITATION}, Table 1",
        summary=SUMMARIES[_variant], options=BGNetConfig, fixed={"variant": _variant},
        paper_name="BGNet" if _variant == "S5" else None,
    )(BGNet)
