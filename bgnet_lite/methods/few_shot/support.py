"""What the two few-shot methods share: the support bank, masked average pooling, the cosine
prior mask, the dilated ResNet-50 and the episode loop behind the pair contract (chapter 9).

Few-shot segmenters (TGRNet, PFENet) segment a query image given a labelled SUPPORT image of
the class to find.  Our contract is ``forward(template, sample) -> logits``, so:

* The support bank lives in registered buffers (it travels in the checkpoint): for each defect
  class c (1 for a binary task, K-1 for K classes) one support image and its binary mask.
  ``training_losses(batch)`` fills it from the training batches by reservoir sampling of size
  one (``update="reservoir"``, the default): the n-th training sample that contains class c
  replaces the stored one with probability 1/n, so the final support is a uniform draw over
  every training sample of class c, and the supports change during training like a few-shot
  method's episodes.  The draws come from a small linear congruential generator whose state is
  a buffer, so the choice is deterministic given the data order.  ``update="first"`` keeps the
  first training sample that contains c.
* Before any defect of class c has been seen, the support of class c is the pair's TEMPLATE
  with an all-background mask (nothing to look for).
* Inference runs one episode per class: the query (= sample) against that class's support
  (resized to the sample's size) gives a two-channel [background, foreground] map, reduced to
  a foreground score fg - bg.  K = 1: the logit is that score.  K > 1: the logits are
  [0, score_1, .., score_{K-1}]: the background's logit is the fixed reference 0, so a pixel is
  background unless some class's episode finds its foreground above its own background (the
  softmax then gives p(background) = 1 / (1 + sum_c exp(score_c)); K = 1 is the same rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bgnet_lite.methods import common

COSINE_EPS = 1e-7  # PFENet's epsilon in the cosine similarity and the min-max normalisation
AREA_EPS = 5e-4  # PFENet's epsilon in the masked average pooling
SUPPORT_UPDATES = ("reservoir", "first")
_LCG_A, _LCG_C, _LCG_M = 1103515245, 12345, 2**31  # the reservoir's deterministic draws


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A [N, 1, H, W] float mask at a feature map's size, bilinear as in PFENet (chapter 9)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=True)


def masked_average_pooling(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``feats`` [N, C, h, w] over the mask [N, 1, H, W] (resized to h, w): the class
    prototype [N, C, 1, 1] (PFENet's Weighted_GAP; chapter 9).  An empty mask gives zeros."""
    mask = resize_mask(mask, feats.shape[-2:])
    area = mask.sum(dim=(2, 3), keepdim=True) + AREA_EPS  # [N, 1, 1, 1]
    return (feats * mask).sum(dim=(2, 3), keepdim=True) / area


def prior_mask(query_feats: torch.Tensor, support_feats: torch.Tensor,
               support_mask: torch.Tensor) -> torch.Tensor:
    """PFENet's training-free prior (chapter 9): for each query position the highest cosine
    similarity to any masked support position, min-max normalised per image to [0, 1].

    query_feats [N, C, h, w], support_feats [N, C, hs, ws], support_mask [N, 1, Hs, Ws];
    returns [N, 1, h, w].  An empty support mask gives zeros."""
    batch, channels, height, width = query_feats.shape
    query_feats, support_feats = query_feats.float(), support_feats.float()  # eps under AMP
    support = support_feats * resize_mask(support_mask.float(), support_feats.shape[-2:])
    query = query_feats.flatten(2)  # [N, C, h*w]
    support = support.flatten(2).transpose(1, 2)  # [N, hs*ws, C]
    norms = support.norm(dim=2, keepdim=True) @ query.norm(dim=1, keepdim=True)  # [N, hs*ws, h*w]
    similarity = (support @ query) / (norms + COSINE_EPS)
    best = similarity.max(dim=1).values  # [N, h*w]
    low = best.min(dim=1, keepdim=True).values
    high = best.max(dim=1, keepdim=True).values
    best = (best - low) / (high - low + COSINE_EPS)
    return best.view(batch, 1, height, width)


def dilated_resnet50(weights: str) -> tuple[nn.ModuleList, bool]:
    """torchvision's ResNet-50 cut into PFENet's five stages (stem, layer1 .. layer4), layer3 and
    layer4 dilated (output stride 8); ImageNet weights under common.py's policy (chapter 9).

    Returns the stages and whether pretrained weights were loaded."""
    from torchvision.models import resnet50

    state = common.torchvision_state("resnet50", weights)
    network = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    if state is not None:
        network.load_state_dict(state)
    stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
    stages = nn.ModuleList([stem, network.layer1, network.layer2, network.layer3,
                            network.layer4])
    return stages, state is not None


def binary_targets(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[N, S, H, W] float 0/1: class c's pixels for each defect class c = 1 .. S, from a batch
    mask (0/1 for K = 1, class ids for K > 1; chapter 9)."""
    if num_classes == 1:
        return (mask > 0.5).float().unsqueeze(1)
    classes = torch.arange(1, num_classes, device=mask.device).view(1, -1, 1, 1)
    return (mask.long().unsqueeze(1) == classes).float()


class SupportBank(nn.Module):
    """One labelled support image per defect class, in buffers (chapter 9; the module
    docstring says how it fills).  ``images`` [S, C, H, W] in [0, 1], ``masks`` [S, 1, H, W],
    ``filled`` [S] bool, ``seen`` [S] how many training samples had the class."""

    def __init__(self, num_defect_classes: int, in_channels: int, update: str = "reservoir"):
        super().__init__()
        if update not in SUPPORT_UPDATES:
            raise ValueError(f"support update must be one of {SUPPORT_UPDATES}, got {update!r}")
        self.update = update
        self.register_buffer("images", torch.zeros(num_defect_classes, in_channels, 0, 0))
        self.register_buffer("masks", torch.zeros(num_defect_classes, 1, 0, 0))
        self.register_buffer("filled", torch.zeros(num_defect_classes, dtype=torch.bool))
        self.register_buffer("seen", torch.zeros(num_defect_classes, dtype=torch.long))
        self.register_buffer("rng_state", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def capture(self, samples: torch.Tensor, targets: torch.Tensor) -> None:
        """Offer every sample of a training batch, in batch order, to the class slots whose
        defect it shows (chapter 9).  samples [N, C, H, W]; targets [N, S, H, W] from
        ``binary_targets``."""
        present = targets.flatten(2).amax(dim=2).bool().tolist()  # [N][S], one sync
        if not any(any(row) for row in present):
            return
        if self.images.shape[-2:] != samples.shape[-2:] and not bool(self.filled.any()):
            size = (len(self.filled), samples.shape[1], *samples.shape[-2:])
            self.images = samples.new_zeros(size, dtype=torch.float32)
            self.masks = samples.new_zeros((size[0], 1, *size[2:]), dtype=torch.float32)
        bank_size = tuple(self.images.shape[-2:])
        for index, row in enumerate(present):
            for slot, has_class in enumerate(row):
                if has_class and self._replace(slot):
                    image = samples[index:index + 1].float()
                    mask = targets[index:index + 1, slot:slot + 1].float()
                    if tuple(image.shape[-2:]) != bank_size:  # a batch of another size
                        image = F.interpolate(image, size=bank_size, mode="bilinear",
                                              align_corners=False)
                        mask = F.interpolate(mask, size=bank_size, mode="nearest")
                    self.images[slot] = image[0]
                    self.masks[slot] = mask[0]
                    self.filled[slot] = True

    def _replace(self, slot: int) -> bool:
        """Count one more sample of the class; True if it becomes the support."""
        self.seen[slot] += 1
        if self.update == "first":
            return not bool(self.filled[slot])
        state = (_LCG_A * int(self.rng_state) + _LCG_C) % _LCG_M
        self.rng_state.fill_(state)
        return state / _LCG_M * int(self.seen[slot]) < 1.0  # probability 1 / seen

    def supports(self, template: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per defect class, (support images [B, C, H, W], masks [B, 1, H, W]) at the template's
        size: the stored support (B = 1) or, before one was captured, the template with an
        all-background mask (B = N; chapter 9)."""
        size = tuple(template.shape[-2:])
        empty = template.new_zeros((template.shape[0], 1, *size))
        pairs = []
        for slot in range(len(self.filled)):
            if not bool(self.filled[slot]):
                pairs.append((template, empty))
                continue
            image = self.images[slot:slot + 1].to(template.dtype)
            mask = self.masks[slot:slot + 1].to(template.dtype)
            if tuple(image.shape[-2:]) != size:
                image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
                mask = F.interpolate(mask, size=size, mode="nearest")
            pairs.append((image, mask))
        return pairs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the stored supports have the training crop's size, unknown when the model is built
        for name in ("images", "masks"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def assemble_logits(scores: list[torch.Tensor]) -> torch.Tensor:
    """Episode scores fg - bg, one [N, 1, H, W] per defect class -> the contract's logits:
    the score itself for K = 1, [0, score_1, .., score_{K-1}] for K > 1 (chapter 9)."""
    if len(scores) == 1:
        return scores[0]
    return torch.cat([torch.zeros_like(scores[0]), *scores], dim=1)


def episode_score(two_class_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, 2, h, w] background/foreground logits -> fg - bg [N, 1, H, W] at the input size,
    bilinear as in PFENet (chapter 9)."""
    score = two_class_logits[:, 1:2] - two_class_logits[:, 0:1]
    return F.interpolate(score, size=size, mode="bilinear", align_corners=True)


def episode_cross_entropy(two_class_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a [N, 2, h, w] episode output, upsampled to the target [N, H, W] 0/1,
    as PFENet's auxiliary losses (chapter 9)."""
    logits = F.interpolate(two_class_logits, size=target.shape[-2:], mode="bilinear",
                           align_corners=True)
    return F.cross_entropy(logits.float(), target.long())


class FewShotPairSegmenter(nn.Module):
    """The episode loop of the module docstring (chapter 9).  A method supplies
    ``encode_query(images)``, ``encode_support(images, masks)``, ``encode_normal(images)``
    (None if it takes no defect-free image) and ``episode(query, support, normal) -> dict`` with
    "logits" [N, 2, h, w] (background, foreground); ``episode_losses(outputs, targets)`` may
    add its own loss terms.  Images reach the encoders ImageNet-normalised."""

    def __init__(self, num_classes: int, in_channels: int, support_update: str):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.normalize = common.ImageNetNormalize(in_channels)
        self.bank = SupportBank(max(num_classes - 1, 1), in_channels, support_update)

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] from one episode per defect class (chapter 9)."""
        return self.run_episodes(template, sample)[0]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Capture supports from this batch, then run the episodes; returns the logits and the
        method's extra loss terms (chapter 9)."""
        targets = binary_targets(batch["mask"], self.num_classes)  # [N, S, H, W]
        self.bank.capture(batch["sample"], targets)
        logits, outputs = self.run_episodes(batch["template"], batch["sample"])
        return logits, self.episode_losses(outputs, targets)

    def run_episodes(self, template: torch.Tensor,
                     sample: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Logits [N, K, H, W] and every episode's outputs, in class order (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        size = tuple(sample.shape[-2:])
        # 1. the query (sample) and, for methods that use one, the defect-free image (template)
        query = self.encode_query(self.normalize(sample))
        normal = self.encode_normal(self.normalize(template))
        # 2. one episode per defect class; a support still missing is the template itself
        scores, outputs, encoded = [], [], {}
        for support_image, support_mask in self.bank.supports(template):
            key = id(support_image)
            if key not in encoded:
                encoded[key] = self.encode_support(self.normalize(support_image), support_mask)
            support = {name: value.expand(sample.shape[0], *value.shape[1:])
                       for name, value in encoded[key].items()}  # a stored support: B 1 -> N
            output = self.episode(query, support, normal)
            scores.append(episode_score(output["logits"], size))  # [N, 1, H, W]
            outputs.append(output)
        # 3. background 0 and one score per class (K > 1), or the one score (K = 1)
        return assemble_logits(scores), outputs

    def encode_normal(self, images: torch.Tensor) -> dict | None:
        """Features of the defect-free image (the template); None: not used (chapter 9)."""
        return None

    def episode_losses(self, outputs: list[dict], targets: torch.Tensor) -> dict:
        """The method's own loss terms from its episodes' outputs; none here (chapter 9)."""
        return {}
