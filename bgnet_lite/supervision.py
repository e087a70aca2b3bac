"""Training targets from the dataset's ground-truth correspondence (chapter 5).

A synthetic pair knows, for every sample pixel, where the same background point lies in the
template (the ``flow`` column of a dataset, ``bgnet_lite.data.io``).  ``flow_to_cell_targets``
turns it into the true template cell of every sample cell of a feature map: the target of the
optional matching loss (``bgnet_lite.losses.matching_loss``) and the reference of
``bgnet_lite.metrics.matching_accuracy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flow_to_cell_targets(
    flow: torch.Tensor, image_hw: tuple[int, int], feat_hw: tuple[int, int]
) -> torch.Tensor:
    """Ground-truth template cell for each sample cell of a feature map (chapter 5).

    flow ``[N, 2, Hf, Wf]``: the (x, y) template pixel coordinate seen at each sample point of a
    regular grid covering the image (the dataset ``flow`` format of ``bgnet_lite.data.io``: pixel
    centres at integers, NaN where undefined).  The feature map has stride
    ``image_h / feat_h`` (and ``image_w / feat_w``).  The flow is sampled bilinearly at each cell
    centre; a cell whose interpolation touches an undefined (NaN) flow value gets -1.  Returns
    ``[N, feat_h * feat_w]`` long: ``cell = floor((coord + 0.5) / stride)`` flattened row-major,
    -1 where undefined or outside the template.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected flow [N, 2, Hf, Wf], got {tuple(flow.shape)}")
    image_h, image_w = image_hw
    feat_h, feat_w = feat_hw
    flow_h, flow_w = flow.shape[-2:]
    if min(image_h, image_w, feat_h, feat_w) <= 0:
        raise ValueError(f"sizes must be positive: image {image_hw}, features {feat_hw}")
    if image_h * flow_w != image_w * flow_h:
        raise ValueError(
            f"flow grid {flow_h}x{flow_w} does not cover image {image_h}x{image_w} evenly "
            "(the flow must be the image size divided by one integer)"
        )
    stride_y, stride_x = image_h / feat_h, image_w / feat_w
    batch = flow.shape[0]
    flow = flow.float()
    defined = torch.isfinite(flow).all(dim=1, keepdim=True)  # [N, 1, Hf, Wf]
    filled = torch.where(defined, flow, torch.zeros_like(flow))
    # Cell centres in grid_sample's normalised coordinates (align_corners=False): for a grid
    # covering the image, the centre of feature cell u lies at 2 (u + 0.5) / feat_w - 1,
    # whatever the flow's own resolution.
    grid_x = (torch.arange(feat_w, device=flow.device, dtype=flow.dtype) + 0.5) * 2 / feat_w - 1
    grid_y = (torch.arange(feat_h, device=flow.device, dtype=flow.dtype) + 0.5) * 2 / feat_h - 1
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1)  # [h, w, 2]
    grid = grid[None].expand(batch, -1, -1, -1)
    options = {"mode": "bilinear", "padding_mode": "border", "align_corners": False}
    coords = F.grid_sample(filled, grid, **options)  # [N, 2, h, w] template pixel coordinates
    # weight of defined neighbours: 1 when every neighbour with a non-zero weight is defined
    defined_weight = F.grid_sample(defined.to(flow.dtype), grid, **options)  # [N, 1, h, w]
    valid = defined_weight[:, 0] > 1.0 - 1e-4  # [N, h, w]
    cell_x = torch.floor((coords[:, 0] + 0.5) / stride_x)
    cell_y = torch.floor((coords[:, 1] + 0.5) / stride_y)
    valid &= (cell_x >= 0) & (cell_x < feat_w) & (cell_y >= 0) & (cell_y < feat_h)
    cells = cell_y.clamp(0, feat_h - 1).long() * feat_w + cell_x.clamp(0, feat_w - 1).long()
    cells = torch.where(valid, cells, torch.full_like(cells, -1))
    return cells.view(batch, feat_h * feat_w)
