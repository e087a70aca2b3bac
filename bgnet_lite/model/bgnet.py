"""BGNet: Siamese features, attention, matching, matched subtraction, fusion (chapter 6).

One class covers the five ablation variants of the paper's Table 1 through flags:

======  ========  =========  ========  =============================================
variant siamese   attention  matching  what reaches the decoder
======  ========  =========  ========  =============================================
S1      no        no         no        features of [template, sample] stacked (6 ch)
S2      yes       no         no        sample - template at all five scales
S3      yes       yes        no        same, attention outputs at 1/8 and 1/32
S4      yes       no         yes       matched subtraction (eq. 8) of backbone features
S5      yes       yes        yes       matched subtraction of attention outputs (BGNet)
======  ========  =========  ========  =============================================

At every scale without matching the subtraction is direct (same position), as in Sec. 3.5,
unless the deviation flag ``align_fine_scales`` resamples the template there along a similarity
transform fitted to the 1/8 matches (``alignment.py``) and/or the deviation flag
``local_match_px`` subtracts the nearest template feature within a small window
(``local_match.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.model.alignment import fit_similarity, warp_template
from bgnet_lite.model.attention import SelfCrossStack
from bgnet_lite.model.backbone import BACKBONE_CHANNELS, BACKBONE_STRIDES, ResNet18Backbone
from bgnet_lite.model.fusion import FusionDecoder
from bgnet_lite.model.local_match import local_matched_subtraction, window_radius
from bgnet_lite.model.matching import (
    MatchConfig,
    MatchResult,
    match_chunked,
    match_dense,
    matched_subtraction,
    soft_matched_subtraction,
)
from bgnet_lite.model.position_encoding import PositionEncodingSine

VARIANTS = ("S1", "S2", "S3", "S4", "S5")
ATTENTION_STRIDES = (8, 32)  # the scales the paper matches at (Sec. 3.5)

_VARIANT_FLAGS = {
    "S1": dict(siamese=False, attention=False, matching=False),
    "S2": dict(siamese=True, attention=False, matching=False),
    "S3": dict(siamese=True, attention=True, matching=False),
    "S4": dict(siamese=True, attention=False, matching=True),
    "S5": dict(siamese=True, attention=True, matching=True),
}


@dataclass
class BGNetConfig:
    """Everything that defines a BGNet model (chapter 6).

    variant: "S1".."S5" (Table 1). The three flags siamese/attention/matching default to None
    = "as the variant says"; a value given explicitly overrides the variant (an ablation of
    the ablation), so ``BGNetConfig(variant="S2")`` and ``from_variant("S2")`` agree.
    num_classes: 1 = binary defect mask, K >= 2 = K classes incl. background (class 0).
    in_channels: 1 (greyscale) or 3 (RGB) channels of each input image.
    weights: backbone initialisation, "auto" | "imagenet" | "none".
    attention_scales: strides whose features get positional encoding + attention and, with
    matching, matched subtraction; a subset of (8, 32).
    depth_8, depth_32: self/cross repetitions at 1/8 (d_model 128) and 1/32 (d_model 512);
    more at the deep scale, as the paper says (Sec. 3.3.3); the paper gives no numbers.
    attention_normalize: divide by phi(Q).sum phi(K) (Linear Transformer); False = eq. 12 as
    printed.
    attention_dim: eq. 11's C_1, the width of Q, K, V at every attention scale, capped at the
    scale's channels; None = the channels (LoFTR). The paper gives no value; 128 makes S5's
    attention at 1/32 about a third cheaper (``benchmarks/bench_model.py``).
    soft_match: deviation flag, subtract sum_a P(a, b) f_a instead of the hard MNN match.
    align_fine_scales: deviation flag; fit a similarity transform to the matches of the finest
    matched scale and resample the template features of the unmatched scales (1/2, 1/4, 1/16)
    along it before subtracting (the paper subtracts those in place). Needs matching.
    local_match_px: deviation flag; at every scale without matching, subtract from each sample
    cell the template cell with the nearest feature within this many image pixels (after the
    alignment, if any); 0 = off (the paper: in place). Components that move on their own by a
    few pixels are what it is for.
    chunked_matching: MNN without the L x S matrix (for large images at inference); the dense
    path is still used when the probabilities are needed (soft_match, need_match_prob).
    """

    variant: str = "S5"
    num_classes: int = 1
    in_channels: int = 3
    weights: str = "auto"
    siamese: bool | None = None
    attention: bool | None = None
    matching: bool | None = None
    soft_match: bool = False
    align_fine_scales: bool = False
    local_match_px: float = 0.0
    attention_scales: tuple[int, ...] = ATTENTION_STRIDES
    depth_8: int = 1
    depth_32: int = 2
    nhead: int = 8
    attention_normalize: bool = True
    attention_dim: int | None = None
    theta: float = 0.2
    temperature: float = 0.1
    chunked_matching: bool = False
    chunk_size: int = 1024

    def __post_init__(self):
        if self.variant not in _VARIANT_FLAGS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for flag, value in _VARIANT_FLAGS[self.variant].items():
            if getattr(self, flag) is None:
                setattr(self, flag, value)
        self.attention_scales = tuple(int(stride) for stride in self.attention_scales)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if not set(self.attention_scales) <= set(ATTENTION_STRIDES):
            raise ValueError(
                f"attention_scales must be a subset of {ATTENTION_STRIDES}, "
                f"got {self.attention_scales}"
            )
        if not self.siamese and (self.attention or self.matching):
            raise ValueError("attention and matching need siamese=True (two feature sets)")
        if self.align_fine_scales and not (self.matching and self.attention_scales):
            raise ValueError("align_fine_scales needs matching (variant S4 or S5)")
        if self.local_match_px < 0:
            raise ValueError(f"local_match_px must be >= 0 (0 = off), got {self.local_match_px}")
        if self.local_match_px and not self.siamese:
            raise ValueError("local_match_px needs siamese=True (a template map to search)")
        if not 0.0 <= self.theta <= 1.0:
            raise ValueError(f"theta is a probability threshold in [0, 1], got {self.theta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @classmethod
    def from_variant(cls, variant: str, **overrides) -> BGNetConfig:
        """The configuration of ablation variant S1..S5 (Table 1), with overrides (chapter 6)."""
        return cls(variant=variant, **overrides)

    def depth(self, stride: int) -> int:
        """Self/cross repetitions at ``stride`` (chapter 4)."""
        return {8: self.depth_8, 32: self.depth_32}[stride]

    def match_config(self, theta: float | None = None) -> MatchConfig:
        """The matching settings (chapter 5); ``theta`` overrides the threshold."""
        return MatchConfig(
            theta=self.theta if theta is None else theta,
            temperature=self.temperature,
            chunk_size=self.chunk_size,
        )


def parameter_size_mb(model: nn.Module) -> float:
    """Parameter size in MiB: number of parameters x 4 bytes (float32) / 2**20 (chapter 7).

    Buffers (BatchNorm running statistics) are not counted. The paper's Table 3 says "MB"
    without defining it; 2**20 bytes is assumed.
    """
    return sum(parameter.numel() for parameter in model.parameters()) * 4 / 2**20


def flatten_cells(feats: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H*W, C], cell index y * W + x (chapter 4)."""
    return feats.flatten(2).transpose(1, 2)


def unflatten_cells(cells: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, H*W, C] -> [N, C, H, W], inverse of ``flatten_cells`` (chapter 4)."""
    return cells.transpose(1, 2).reshape(cells.shape[0], cells.shape[2], height, width)


class BGNet(nn.Module):
    """Background-generalised template-sample segmentation network (chapter 6)."""

    def __init__(self, config: BGNetConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else BGNetConfig()
        encoder_channels = config.in_channels if config.siamese else 6
        self.backbone = ResNet18Backbone(encoder_channels, weights=config.weights)
        self.position_encodings = nn.ModuleDict()
        self.attention = nn.ModuleDict()
        if config.attention:
            for stride in config.attention_scales:
                channels = BACKBONE_CHANNELS[BACKBONE_STRIDES.index(stride)]
                self.position_encodings[str(stride)] = PositionEncodingSine(channels)
                attention_dim = (
                    None if config.attention_dim is None else min(config.attention_dim, channels)
                )
                self.attention[str(stride)] = SelfCrossStack(
                    channels, config.nhead, config.depth(stride),
                    normalize=config.attention_normalize, attention_dim=attention_dim,
                )
        self.decoder = FusionDecoder(BACKBONE_CHANNELS, config.num_classes)

    @property
    def matched_strides(self) -> tuple[int, ...]:
        """Strides whose subtraction follows the matching, empty without it (chapter 6)."""
        return self.config.attention_scales if self.config.matching else ()

    def check_inputs(self, template: torch.Tensor, sample: torch.Tensor) -> None:
        """Raise a ValueError saying what is wrong with the input pair (chapter 6)."""
        expected = self.config.in_channels
        for name, images in (("template", template), ("sample", sample)):
            if images.dim() != 4 or images.shape[1] != expected:
                raise ValueError(
                    f"{name} must be [N, {expected}, H, W] (config.in_channels={expected}), "
                    f"got {tuple(images.shape)}"
                )
        if template.shape != sample.shape:
            raise ValueError(
                f"template {tuple(template.shape)} and sample {tuple(sample.shape)} must have "
                "the same shape"
            )
        if min(template.shape[-2:]) < 32:
            raise ValueError(f"images must be at least 32 x 32 pixels, got {template.shape[-2:]}")

    def siamese_features(
        self, template: torch.Tensor, sample: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Step 1: both images through the one shared backbone (chapter 2).

        They run as one batch [2N, ...]: the same weights, and BatchNorm sees both images.
        """
        feats = self.backbone(torch.cat([template, sample], dim=0))  # 5 x [2N, C_i, H_i, W_i]
        template_feats = [level[: template.shape[0]] for level in feats]  # 5 x [N, C_i, ...]
        sample_feats = [level[template.shape[0]:] for level in feats]  # 5 x [N, C_i, ...]
        return template_feats, sample_feats

    def dense_features(
        self, stride: int, template_map: torch.Tensor, sample_map: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2 at one scale: eq. 10 then eq. 5-6; maps [N, C, H, W] in and out (ch. 3-4)."""
        height, width = template_map.shape[-2:]
        position_encoding = self.position_encodings[str(stride)]
        template_cells = flatten_cells(position_encoding(template_map))  # [N, L, C]
        sample_cells = flatten_cells(position_encoding(sample_map))  # [N, S, C]
        template_cells, sample_cells = self.attention[str(stride)](template_cells, sample_cells)
        return (
            unflatten_cells(template_cells, height, width),  # [N, C, H, W]
            unflatten_cells(sample_cells, height, width),  # [N, C, H, W]
        )

    def match(
        self, template_map: torch.Tensor, sample_map: torch.Tensor, *, dense: bool,
        theta: float | None = None,
    ) -> MatchResult:
        """Step 3 at one scale: eq. 13-15 on maps [N, C, H, W] (chapter 5).

        ``dense=True`` returns a differentiable match_prob [N, L, S]. Otherwise only the
        discrete matches are wanted: no autograd graph is built (the hard matching has no
        gradient anyway, and the graph would keep L x S tensors alive), and
        ``chunked_matching`` avoids the L x S matrix altogether.
        """
        match_config = self.config.match_config(theta)
        template_cells = flatten_cells(template_map)  # [N, L, C]
        sample_cells = flatten_cells(sample_map)  # [N, S, C]
        if dense:
            return match_dense(template_cells, sample_cells, match_config)
        with torch.no_grad():
            if self.config.chunked_matching:
                return match_chunked(template_cells, sample_cells, match_config)
            return match_dense(template_cells, sample_cells, match_config)

    def forward(
        self, template: torch.Tensor, sample: torch.Tensor, *, need_match_prob: bool = False
    ) -> dict:
        """template, sample [N, C, H, W] in [0, 1] -> dict (chapter 6).

        "logits" [N, K, H, W]; "diff_feats" the five maps the decoder fuses; with matching,
        "matches" {stride: MatchResult} and, if ``need_match_prob``, "match_prob"
        {stride: [N, L, S]} (for the matching loss).
        """
        self.check_inputs(template, sample)
        config = self.config
        output_size = tuple(template.shape[-2:])
        if not config.siamese:
            # S1: one encoder sees template and sample stacked; no subtraction anywhere.
            stacked = torch.cat(
                [template.expand(-1, 3, -1, -1), sample.expand(-1, 3, -1, -1)], dim=1
            )  # [N, 6, H, W]
            diff_feats = self.backbone(stacked)
            return {"logits": self.decoder(diff_feats, output_size), "diff_feats": diff_feats}

        # 1. Siamese backbone: 5 maps each, 1/2 .. 1/32.
        template_feats, sample_feats = self.siamese_features(template, sample)

        # 2. Positional encoding (eq. 9-10) + self/cross attention (eq. 5-6) at 1/8 and 1/32.
        if config.attention:
            for stride in config.attention_scales:
                level = BACKBONE_STRIDES.index(stride)
                template_feats[level], sample_feats[level] = self.dense_features(
                    stride, template_feats[level], sample_feats[level]
                )

        # 3. Matching (eq. 13-15) on the dense (S5) or raw backbone (S4) features.
        matches: dict[int, MatchResult] = {}
        match_prob: dict[int, torch.Tensor] = {}
        for stride in self.matched_strides:
            level = BACKBONE_STRIDES.index(stride)
            dense = need_match_prob or config.soft_match
            result = self.match(template_feats[level], sample_feats[level], dense=dense)
            if dense:
                match_prob[stride] = result.match_prob  # [N, L, S]
            # the L x S matrix is large; keep it in the output only when asked for
            matches[stride] = dataclasses.replace(result, match_prob=None)

        # 4. Matched subtraction (eq. 8) where matched, direct subtraction elsewhere; with
        #    align_fine_scales (deviation) the template is first resampled along a similarity
        #    transform fitted to the finest scale's matches, with local_match_px (deviation)
        #    each sample cell then subtracts the nearest template feature in a small window.
        alignment = None
        if config.align_fine_scales:
            finest = min(matches)
            feat_hw = tuple(template_feats[BACKBONE_STRIDES.index(finest)].shape[-2:])
            # the actual stride, for images that the map does not divide evenly
            stride_yx = (output_size[0] / feat_hw[0], output_size[1] / feat_hw[1])
            alignment = fit_similarity(
                matches[finest].sample_to_template, feat_hw, stride_yx
            )  # [N, 2, 3]
        diff_feats = []
        for level, stride in enumerate(BACKBONE_STRIDES):
            if stride in matches and config.soft_match:
                diff = soft_matched_subtraction(
                    sample_feats[level], template_feats[level], match_prob[stride]
                )
            elif stride in matches:
                diff = matched_subtraction(
                    sample_feats[level], template_feats[level],
                    matches[stride].sample_to_template,
                )
            else:
                template_map = template_feats[level]
                if alignment is not None:
                    template_map = warp_template(template_map, alignment, output_size)
                radius = window_radius(config.local_match_px, stride)
                diff = local_matched_subtraction(sample_feats[level], template_map, radius)
            diff_feats.append(diff)  # [N, C_i, H_i, W_i]

        # 5. U-Net-like fusion of the five difference maps -> per-pixel logits.
        output = {
            "logits": self.decoder(diff_feats, output_size),  # [N, K, H, W]
            "diff_feats": diff_feats,
        }
        if matches:
            output["matches"] = matches
        if alignment is not None:
            output["alignment"] = alignment  # [N, 2, 3] sample -> template pixels
        if need_match_prob:
            output["match_prob"] = match_prob
        return output

    @torch.no_grad()
    def matching_only(
        self, template: torch.Tensor, sample: torch.Tensor, theta: float | None = None
    ) -> dict:
        """Steps 1-3 without the decoder, for the book's widgets (chapter 5).

        Returns "template_feats", "sample_feats" {stride: [N, C, H, W]} (after attention when
        the model has it) and "matches" {stride: MatchResult with match_prob} at the
        attention scales, whether or not the model itself subtracts along the matches.
        Call ``model.eval()`` first so BatchNorm uses its running statistics.
        """
        self.check_inputs(template, sample)
        if not self.config.siamese:
            raise ValueError("S1 has no separate template/sample features to match")
        template_feats, sample_feats = self.siamese_features(template, sample)
        output = {"template_feats": {}, "sample_feats": {}, "matches": {}}
        for stride in self.config.attention_scales:
            level = BACKBONE_STRIDES.index(stride)
            template_map, sample_map = template_feats[level], sample_feats[level]
            if self.config.attention:
                template_map, sample_map = self.dense_features(stride, template_map, sample_map)
            output["template_feats"][stride] = template_map
            output["sample_feats"][stride] = sample_map
            output["matches"][stride] = self.match(
                template_map, sample_map, dense=True, theta=theta
            )
        return output
