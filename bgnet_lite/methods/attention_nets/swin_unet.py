"""Swin U-Net: a U-shaped pure Swin Transformer, fed the concatenated pair (chapter 9).

Source: Cao et al., "Swin-Unet: Unet-like Pure Transformer for Medical Image Segmentation",
ECCV Workshops 2022 (the paper's reference [50]). Library: timm's Swin-T
(``swin_tiny_patch4_window7_224``) is the encoder and timm's ``SwinTransformerStage`` the
decoder's blocks; the patch-expanding layers are hand-written (timm has none).

Faithful to Cao et al.: patch size 4, embedding 96, depths (2, 2, 2, 2), heads (3, 6, 12, 24),
window 7, MLP ratio 4, stochastic depth 0.2 (their "lite" configuration); the decoder mirrors
the encoder: patch expanding (a linear layer doubling the width, rearranged into 2 x 2 tokens of
half the width), a skip concatenation reduced by a linear layer, two Swin blocks per level, and a
final x4 patch expanding to full resolution before a 1x1 classifier. ImageNet Swin-T weights for
the encoder, as theirs.

GUESSED / CHANGED: how the template enters: stacked with the sample on channels, the 4x4 patch
embedding widened to 6 channels (``common.widen_first_conv``). Sizes: Cao et al. train at 224^2,
where every level (56, 28, 14, 7 tokens) is a multiple of the window 7. We keep window 7 at any
size: the input is replicate-padded to a multiple of 32 (patch 4 x three 2x merges, so skips
and expanded tokens align) and timm zero-pads each level to a multiple of the window inside the
block, computing the shifted-window mask for the padded size (``dynamic_mask``; the padding
Swin's own detection/segmentation backbones use); at 64^2 the bottleneck has 2 x 2 tokens in one
padded window. (chapter 9)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method

SWIN_T = "swin_tiny_patch4_window7_224"
TRAIN_SIZE = 224  # Cao et al.'s input size: fixes timm's window clamping, not the input size


class PatchExpand(nn.Module):
    """Tokens [N, h, w, C] -> [N, s h, s w, C_out]: a linear layer to s^2 C_out channels, each
    token's channels rearranged into its s x s block, LayerNorm (chapter 9)."""

    def __init__(self, dim: int, scale: int, out_dim: int):
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = tokens.shape
        scale = self.scale
        blocks = self.expand(tokens).view(batch, height, width, scale, scale, self.out_dim)
        expanded = blocks.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * scale,
                                                             width * scale, self.out_dim)
        return self.norm(expanded)


class DecoderLevel(nn.Module):
    """Skip concatenation reduced to ``dim`` by a linear layer, Swin blocks, then patch
    expanding to the next level (none at the last level) (chapter 9)."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, resolution: int,
                 drop_path: list[float], expand: bool):
        super().__init__()
        # timm is imported when a model is built, so that importing the package stays fast
        from timm.models.swin_transformer import SwinTransformerStage

        self.reduce = nn.Linear(2 * dim, dim)
        self.blocks = SwinTransformerStage(
            dim, dim, input_resolution=(resolution, resolution), depth=depth, downsample=False,
            num_heads=heads, window_size=window, dynamic_mask=True, drop_path=drop_path)
        self.expand = PatchExpand(dim, 2, dim // 2) if expand else nn.Identity()

    def forward(self, tokens: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        tokens = self.reduce(torch.cat([tokens, skip], dim=-1))  # [N, h, w, C]
        return self.expand(self.blocks(tokens))


@dataclass
class SwinUNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet Swin-T encoder: "auto" | "imagenet" | "none"
    depths: tuple[int, ...] = (2, 2, 2, 2)  # Swin blocks per level (Cao et al.; Swin-T: 2,2,6,2)
    window_size: int = 7  # Swin window (Cao et al.: 7)
    drop_path_rate: float = 0.2  # stochastic depth, encoder and decoder (Cao et al.: 0.2)


@register_method("swin-unet", family="Attention-based",
                 citation="Cao et al., Swin-Unet: Unet-like Pure Transformer for Medical Image "
                          "Segmentation, ECCV Workshops 2022",
                 summary="Swin-T encoder, Swin patch-expanding decoder with skips, pair stacked "
                         "on channels",
                 options=SwinUNetOptions, paper_name="Swin U-Net")
class SwinUNetPair(nn.Module):
    """Swin-Unet on template ⊕ sample: ``forward(template, sample) -> [N, K, H, W]``
    (chapter 9)."""

    def __init__(self, options: SwinUNetOptions):
        super().__init__()
        import timm

        self.in_channels = options.in_channels
        state = common.pretrained_state(
            "ImageNet Swin-T", options.weights,
            lambda: timm.create_model(SWIN_T, pretrained=True).state_dict(),
            f"timm loads {SWIN_T} from the Hugging Face hub (set HF_HUB_OFFLINE=1 with a "
            "filled cache to use it offline)")
        self.encoder = timm.create_model(
            SWIN_T, pretrained=False, num_classes=0, img_size=TRAIN_SIZE, strict_img_size=False,
            depths=options.depths, window_size=options.window_size,
            drop_path_rate=options.drop_path_rate)
        if state is not None:  # Swin-T's extra blocks of stage 3 and its head are left out
            own = self.encoder.state_dict()
            self.encoder.load_state_dict({k: v for k, v in state.items() if k in own},
                                         strict=False)
        self.pretrained = state is not None
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        self.encoder.patch_embed.proj = common.widen_first_conv(self.encoder.patch_embed.proj, 2)

        dims = [stage.blocks[0].dim for stage in self.encoder.layers]  # 96, 192, 384, 768
        depths = [len(stage.blocks) for stage in self.encoder.layers]
        heads = [stage.blocks[0].attn.num_heads for stage in self.encoder.layers]
        rates = torch.linspace(0, options.drop_path_rate, sum(depths)).tolist()
        self.bottleneck_expand = PatchExpand(dims[3], 2, dims[2])
        self.levels = nn.ModuleList(
            DecoderLevel(dims[level], depths[level], heads[level], options.window_size,
                         TRAIN_SIZE // (4 * 2 ** level),
                         rates[sum(depths[:level]):sum(depths[:level + 1])], expand=level > 0)
            for level in (2, 1, 0))
        self.norm_up = nn.LayerNorm(dims[0])
        self.final_expand = PatchExpand(dims[0], 4, dims[0])
        self.classifier = nn.Conv2d(dims[0], options.num_classes, 1, bias=False)
        for module in (self.bottleneck_expand, self.levels, self.final_expand):
            module.apply(_init_like_swin)

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. pad to a multiple of 32 so that every level's tokens align with its skip
        pair = self.normalize(common.concat_pair(template, sample))  # [N, 6, H, W]
        pair, size = common.pad_to_multiple(pair, 32)
        # 2. Swin-T encoder: 4x4 patches, then 4 stages; keep each stage's tokens as a skip
        tokens = self.encoder.patch_embed(pair)  # [N, H/4, W/4, 96]
        skips = []
        for stage in self.encoder.layers:
            tokens = stage(tokens)
            skips.append(tokens)  # [N, H/4, W/4, 96] .. [N, H/32, W/32, 768]
        tokens = self.bottleneck_expand(self.encoder.norm(skips.pop()))  # [N, H/16, W/16, 384]
        # 3. decoder: skip concatenation, Swin blocks, patch expanding, level by level
        for level, skip in zip(self.levels, reversed(skips), strict=True):
            tokens = level(tokens, skip)  # ... [N, H/4, W/4, 96]
        # 4. final x4 patch expanding and the 1x1 classifier
        tokens = self.final_expand(self.norm_up(tokens))  # [N, H, W, 96]
        logits = self.classifier(tokens.permute(0, 3, 1, 2))  # [N, K, H, W] (padded)
        return common.crop(logits, size)


def _init_like_swin(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms, as Swin and
    Swin-Unet initialise their layers (chapter 9)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
