"""BGNet: Siamese features, attention, matching, matched subtraction, fusion (chapter 6).

One class covers the five ablation variants of the paper's Table 1 through the switches of
:class:`~bgnet_lite.methods.bgnet.config.BGNetConfig` (its docstring has the table).  At every
scale without matching the subtraction is direct (same position), as in Sec. 3.5, unless a
deviation flag (``deviations.align_fine_scales``, ``deviations.local_match_px``) moves the
template there first (``deviations/``).

The method contract (``bgnet_lite.methods``): ``forward(template, sample)`` returns the logits
``[N, K, H, W]``.  ``forward_details`` returns them with the matches and the difference maps
(for the book and the matching metric), ``training_losses`` adds the optional matching loss.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bgnet_lite.losses import matching_loss
from bgnet_lite.methods.bgnet.attention import SelfCrossStack
from bgnet_lite.methods.bgnet.backbone import (
    BACKBONE_CHANNELS,
    BACKBONE_STRIDES,
    ResNet18Backbone,
)
from bgnet_lite.methods.bgnet.config import BGNetConfig
from bgnet_lite.methods.bgnet.deviations.alignment import fit_similarity, warp_template
from bgnet_lite.methods.bgnet.deviations.local_match import (
    local_matched_subtraction,
    window_radius,
)
from bgnet_lite.methods.bgnet.fusion import FusionDecoder
from bgnet_lite.methods.bgnet.matching import MatchConfig, MatchResult, match_chunked, match_dense
from bgnet_lite.methods.bgnet.position_encoding import PositionEncodingSine
from bgnet_lite.methods.bgnet.subtraction import matched_subtraction, soft_matched_subtraction
from bgnet_lite.supervision import flow_to_cell_targets


def flatten_cells(feats: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H*W, C], cell index y * W + x (chapter 4)."""
    return feats.flatten(2).transpose(1, 2)


def unflatten_cells(cells: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, H*W, C] -> [N, C, H, W], inverse of ``flatten_cells`` (chapter 4)."""
    return cells.transpose(1, 2).reshape(cells.shape[0], cells.shape[2], height, width)


class Tap(nn.Identity):
    """A named point of the forward pass that hooks (Grad-CAM, chapter 14) can attach to:
    each tap is called once per forward, unlike the shared backbone, which sees template and
    sample in one call.  No parameters, so checkpoints are unchanged."""


TAP_KINDS = ("template", "sample", "difference")


class BGNet(nn.Module):
    """Background-generalised template-sample segmentation network (chapter 6).

    ``taps["template_8"]``, ``taps["sample_8"]``, ``taps["difference_8"]`` (and at every
    stride): the features the decoder's subtraction uses and the difference it fuses."""

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
                    mlp_dim=config.mlp_dim,
                )
        self.decoder = FusionDecoder(BACKBONE_CHANNELS, config.num_classes,
                                     config.decoder_channels)
        self.taps = nn.ModuleDict({f"{kind}_{stride}": Tap() for kind in TAP_KINDS
                                   for stride in BACKBONE_STRIDES})

    @property
    def pretrained(self) -> bool:
        """Whether the backbone started from ImageNet weights (recorded in every run)."""
        return self.backbone.pretrained

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
        self, template_map: torch.Tensor, sample_map: torch.Tensor, *, dense: bool
    ) -> MatchResult:
        """Step 3 at one scale: eq. 13-15 on maps [N, C, H, W] (chapter 5).

        ``dense=True`` returns a differentiable match_prob [N, L, S]. Otherwise only the
        discrete matches are wanted: no autograd graph is built (the hard matching has no
        gradient anyway, and the graph would keep L x S tensors alive), and the deviation
        ``chunked_matching`` avoids the L x S matrix altogether.
        """
        deviations = self.config.deviations
        match_config = MatchConfig(theta=self.config.theta, temperature=self.config.temperature,
                                   chunk_size=deviations.chunk_size)
        template_cells = flatten_cells(template_map)  # [N, L, C]
        sample_cells = flatten_cells(sample_map)  # [N, S, C]
        if dense:
            return match_dense(template_cells, sample_cells, match_config)
        with torch.no_grad():
            if deviations.chunked_matching:
                return match_chunked(template_cells, sample_cells, match_config)
            return match_dense(template_cells, sample_cells, match_config)

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 6)."""
        return self.forward_details(template, sample)["logits"]

    def forward_details(
        self, template: torch.Tensor, sample: torch.Tensor, *, need_match_prob: bool = False
    ) -> dict:
        """The forward pass with what the book and the metrics look at (chapter 6).

        "logits" [N, K, H, W]; "diff_feats" the five maps the decoder fuses; with matching,
        "matches" {stride: MatchResult} and, if ``need_match_prob``, "match_prob"
        {stride: [N, L, S]} (for the matching loss); with align_fine_scales, "alignment".
        """
        self.check_inputs(template, sample)
        config = self.config
        output_size = tuple(template.shape[-2:])
        if not config.siamese:
            # S1: one encoder sees template and sample stacked; no subtraction anywhere.
            stacked = torch.cat(
                [template.expand(-1, 3, -1, -1), sample.expand(-1, 3, -1, -1)], dim=1
            )  # [N, 6, H, W]
            diff_feats = [self.taps[f"difference_{stride}"](level) for stride, level
                          in zip(BACKBONE_STRIDES, self.backbone(stacked), strict=True)]
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

        for level, stride in enumerate(BACKBONE_STRIDES):  # identities, for Grad-CAM
            template_feats[level] = self.taps[f"template_{stride}"](template_feats[level])
            sample_feats[level] = self.taps[f"sample_{stride}"](sample_feats[level])

        # 3. Matching (eq. 13-15) on the dense (S5) or raw backbone (S4) features.
        matches: dict[int, MatchResult] = {}
        match_prob: dict[int, torch.Tensor] = {}
        for stride in self.matched_strides:
            level = BACKBONE_STRIDES.index(stride)
            dense = need_match_prob or config.deviations.soft_match
            result = self.match(template_feats[level], sample_feats[level], dense=dense)
            if dense:
                match_prob[stride] = result.match_prob  # [N, L, S]
            # the L x S matrix is large; keep it in the output only when asked for
            matches[stride] = dataclasses.replace(result, match_prob=None)

        # 4. Matched subtraction (eq. 8) where matched, direct subtraction elsewhere.
        alignment = self._fine_alignment(matches, template_feats, output_size)
        diff_feats = self._subtract(template_feats, sample_feats, matches, match_prob, alignment,
                                    output_size)
        diff_feats = [self.taps[f"difference_{stride}"](diff)
                      for stride, diff in zip(BACKBONE_STRIDES, diff_feats, strict=True)]

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

    def _fine_alignment(self, matches: dict, template_feats: list, output_size: tuple):
        """Deviation ``align_fine_scales``: a similarity fitted to the finest scale's matches,
        [N, 2, 3] sample -> template pixels, or None when the flag is off (chapter 6)."""
        if not self.config.deviations.align_fine_scales:
            return None
        finest = min(matches)
        feat_hw = tuple(template_feats[BACKBONE_STRIDES.index(finest)].shape[-2:])
        # the actual stride, for images that the map does not divide evenly
        stride_yx = (output_size[0] / feat_hw[0], output_size[1] / feat_hw[1])
        return fit_similarity(matches[finest].sample_to_template, feat_hw, stride_yx)

    def _subtract(self, template_feats, sample_feats, matches, match_prob, alignment,
                  output_size) -> list[torch.Tensor]:
        """Step 4 at the five scales: eq. 8 where matched (soft with ``soft_match``); elsewhere
        direct, after the optional alignment and local search (deviations, chapter 6)."""
        deviations = self.config.deviations
        diff_feats = []
        for level, stride in enumerate(BACKBONE_STRIDES):
            if stride in matches and deviations.soft_match:
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
                radius = window_radius(deviations.local_match_px, stride)
                diff = local_matched_subtraction(sample_feats[level], template_map, radius)
            diff_feats.append(diff)  # [N, C_i, H_i, W_i]
        return diff_feats

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the weighted extra loss terms of a training batch (chapter 7).

        With the deviation ``match_loss`` > 0: the matching loss at every matched scale against
        the cells of the batch's ground-truth ``flow``, times its weight; else no extra term.
        """
        weight = self.config.deviations.match_loss
        details = self.forward_details(batch["template"], batch["sample"],
                                       need_match_prob=weight > 0)
        if weight <= 0:
            return details["logits"], {}
        image_hw = batch["sample"].shape[-2:]
        term = details["logits"].new_zeros(())
        for stride, prob in details["match_prob"].items():
            feat_hw = (image_hw[0] // stride, image_hw[1] // stride)
            term = term + matching_loss(prob, flow_to_cell_targets(batch["flow"], image_hw,
                                                                   feat_hw))
        return details["logits"], {"match": weight * term}

    @torch.no_grad()
    def matching_only(self, template: torch.Tensor, sample: torch.Tensor) -> dict:
        """Steps 1-3 without the decoder, for the book's widgets (chapter 5).

        Returns "template_feats", "sample_feats" {stride: [N, C, H, W]} (after attention when
        the model has it) and "matches" {stride: MatchResult with match_prob} at the
        attention scales, whether or not the model itself subtracts along the matches.  For
        another threshold than the model's theta, apply
        ``matching.mutual_nearest_neighbours(match_prob, theta)``.  Call ``model.eval()``
        first so BatchNorm uses its running statistics.
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
            output["matches"][stride] = self.match(template_map, sample_map, dense=True)
        return output
