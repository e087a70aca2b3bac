"""BGNet's configuration: the paper's settings first, our deviations in one nested block (ch. 6).

The five ablation variants of Table 1 are one model with three switches:

======  ========  =========  ========  =============================================
variant siamese   attention  matching  what reaches the decoder
======  ========  =========  ========  =============================================
S1      no        no         no        features of [template, sample] stacked (6 ch)
S2      yes       no         no        sample - template at all five scales
S3      yes       yes        no        same, attention outputs at 1/8 and 1/32
S4      yes       no         yes       matched subtraction (eq. 8) of backbone features
S5      yes       yes        yes       matched subtraction of attention outputs (BGNet)
======  ========  =========  ========  =============================================

Widths the paper does not print.  Table 3 gives BGNet 47.70 MB; the ResNet-18 backbone alone
is 42.64 MiB (float32), which leaves about 5 MiB for the attention and the decoder.  The rule
we chose: the decoder blocks are a quarter of the classic U-Net widths (the skips' 256, 128,
64, 64 -> 64, 32, 16, 16), and every attention layer has Q/K/V 32 wide (8 heads of 4 channels)
and an MLP 64 wide.  That makes S5 47.67 MiB (-0.1 %).  ``LOFTR_WIDTHS`` restores LoFTR's
widths (Q/K/V = d_model, MLP 2 d_model) and the full U-Net decoder: S5 96.16 MiB, the default
before the paper-size rule (chapter 6 compares both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgnet_lite.methods.bgnet.backbone import WEIGHT_CHOICES

VARIANTS = ("S1", "S2", "S3", "S4", "S5")
ATTENTION_STRIDES = (8, 32)  # the scales the paper matches at (Sec. 3.5)

_VARIANT_FLAGS = {  # (siamese, attention, matching)
    "S1": (False, False, False),
    "S2": (True, False, False),
    "S3": (True, True, False),
    "S4": (True, False, True),
    "S5": (True, True, True),
}

# None = the width each component takes by default: d_model for Q/K/V, 2 d_model for the MLP,
# each skip's channels for the decoder (LoFTR and U-Net)
LOFTR_WIDTHS = {"attention_dim": None, "mlp_dim": None, "decoder_channels": None}


@dataclass
class Deviations:
    """Options the paper does not have; every default is the paper (chapters 5-6).

    match_loss: weight of a LoFTR-style loss on the match probabilities, from the dataset's
    ground-truth correspondences (the paper trains matching through the segmentation only).
    soft_match: subtract ``sum_a P(a, b) f_a`` instead of the hard MNN match (differentiable).
    align_fine_scales: fit a similarity transform to the finest matched scale's matches and
    resample the template at 1/2, 1/4, 1/16 along it before subtracting (the paper subtracts
    those scales in place).  Needs matching.
    local_match_px: at every scale without matching, subtract the template cell with the
    nearest feature within this many pixels (after the alignment, if any); 0 = in place.
    chunked_matching, chunk_size: MNN without the L x S matrix (large images at inference);
    the same matches, so not a change of method; the dense path is used when probabilities
    are needed.
    """

    match_loss: float = 0.0
    soft_match: bool = False
    align_fine_scales: bool = False
    local_match_px: float = 0.0
    chunked_matching: bool = False
    chunk_size: int = 1024


@dataclass
class BGNetConfig:
    """Everything that defines a BGNet model (chapter 6).

    The paper's settings: variant "S1".."S5" (Table 1); num_classes K (1 = binary mask, else
    classes incl. background); in_channels 1 or 3 per image; weights of the ResNet-18 backbone
    ("auto": ImageNet if available, else random with a warning; the paper uses ImageNet);
    attention_scales (1/8 and 1/32, Sec. 3.5); depth_8, depth_32 self/cross repetitions (more
    at the deep scale, Sec. 3.3.3; the paper gives no numbers); nhead; theta, eq. 15.

    Widths the paper does not print (see the module docstring): attention_dim (eq. 11's C_1),
    mlp_dim, decoder_channels (1/16 .. 1/2); None = LoFTR / U-Net widths.

    Our reading where the printed formula cannot be used as is: attention_normalize divides
    eq. 12 by ``phi(Q) . sum phi(K)`` as the cited Linear Transformer does (False = as
    printed); temperature divides eq. 13's scores by ``C * temperature`` (LoFTR) so the
    softmax of eq. 14 is not saturated.

    deviations: the options of :class:`Deviations`, all off by default.
    """

    variant: str = "S5"
    num_classes: int = 1
    in_channels: int = 3
    weights: str = "auto"
    attention_scales: tuple[int, ...] = ATTENTION_STRIDES
    depth_8: int = 1
    depth_32: int = 2
    nhead: int = 8
    theta: float = 0.2
    attention_dim: int | None = 32
    mlp_dim: int | None = 64
    decoder_channels: tuple[int, ...] | None = (64, 32, 16, 16)
    attention_normalize: bool = True
    temperature: float = 0.1
    deviations: Deviations = field(default_factory=Deviations)

    def __post_init__(self):
        if isinstance(self.deviations, dict):  # from run.json
            self.deviations = Deviations(**self.deviations)
        if self.variant not in _VARIANT_FLAGS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        self.attention_scales = tuple(int(stride) for stride in self.attention_scales)
        if self.decoder_channels is not None:
            self.decoder_channels = tuple(int(width) for width in self.decoder_channels)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.weights not in WEIGHT_CHOICES:
            raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, got {self.weights!r}")
        if not set(self.attention_scales) <= set(ATTENTION_STRIDES):
            raise ValueError(f"attention_scales must be a subset of {ATTENTION_STRIDES}, "
                             f"got {self.attention_scales}")
        if not 0.0 <= self.theta <= 1.0:
            raise ValueError(f"theta is a probability threshold in [0, 1], got {self.theta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self._check_deviations()

    def _check_deviations(self) -> None:
        deviations = self.deviations
        if deviations.match_loss < 0:
            raise ValueError(f"match_loss must be >= 0 (0 = off), got {deviations.match_loss}")
        needs_matching = {"match_loss": deviations.match_loss > 0,
                          "soft_match": deviations.soft_match,
                          "align_fine_scales": deviations.align_fine_scales}
        for name, used in needs_matching.items():
            if used and not (self.matching and self.attention_scales):
                raise ValueError(f"{name} needs matching (variant S4 or S5)")
        if deviations.local_match_px < 0:
            raise ValueError(f"local_match_px must be >= 0 (0 = off), "
                             f"got {deviations.local_match_px}")
        if deviations.local_match_px and not self.siamese:
            raise ValueError("local_match_px needs a Siamese variant (S2-S5): a template map "
                             "to search")
        if int(deviations.chunk_size) != deviations.chunk_size or deviations.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {deviations.chunk_size}")

    @property
    def siamese(self) -> bool:
        """Template and sample through the one shared backbone (S2-S5)."""
        return _VARIANT_FLAGS[self.variant][0]

    @property
    def attention(self) -> bool:
        """Positional encoding + self/cross attention at ``attention_scales`` (S3, S5)."""
        return _VARIANT_FLAGS[self.variant][1]

    @property
    def matching(self) -> bool:
        """Matched subtraction at ``attention_scales`` (S4, S5)."""
        return _VARIANT_FLAGS[self.variant][2]

    def depth(self, stride: int) -> int:
        """Self/cross repetitions at ``stride`` (chapter 4)."""
        return {8: self.depth_8, 32: self.depth_32}[stride]
