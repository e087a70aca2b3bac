"""Linear self- and cross-attention, eq. 5-6 and 11-12 (chapter 4, "Linear attention").

Softmax attention compares every query with every key: ``L x S`` work and memory.  The Linear
Transformer (Katharopoulos et al. 2020), which the paper cites, replaces ``softmax(Q K^T)`` by a
product of feature maps ``phi(Q) phi(K)^T`` with ``phi(x) = elu(x) + 1 > 0``.  Multiplying
``phi(K)^T V`` first (a ``D x D`` matrix per head) makes the cost linear in ``L`` and ``S``:

    Atten(Q, K, V)_l = phi(Q_l) (sum_s phi(K_s)^T V_s)  /  phi(Q_l) . sum_s phi(K_s)

Deviation (flag ``normalize``): eq. 12 as printed has no denominator.  The cited Linear
Transformer and LoFTR divide by ``phi(Q_l) . sum_s phi(K_s)`` so that each output is a weighted
*average* of the values (the weights sum to 1, like softmax).  ``normalize=True`` (default) does
that; ``normalize=False`` is the printed formula, whose outputs grow with ``S``.

Tensor layout: ``[N, L, H, D]`` = batch, positions, heads, channels per head (``C = H * D``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """The positive feature map ``phi(x) = elu(x) + 1`` of eq. 12 (chapter 4).

    Written as ``relu(x) + exp(min(x, 0))``, which is ``x + 1`` for ``x > 0`` and ``exp(x)``
    otherwise, i.e. exactly ``elu(x) + 1``: it avoids the rounding of ``(exp(x) - 1) + 1`` and
    is several times faster than ``F.elu`` on the CPU.
    """
    return F.relu(x) + torch.exp(x.clamp(max=0.0))


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Eq. 12, ``phi(Q) (phi(K)^T V)`` per head, in O(L + S) (chapter 4).

    query ``[N, L, H, D]``, key and value ``[N, S, H, D]`` -> ``[N, L, H, D]``.
    ``normalize=True`` divides by ``phi(Q_l) . sum_s phi(K_s) + eps`` (Linear Transformer, LoFTR);
    ``normalize=False`` is eq. 12 as printed (see the module docstring).
    """
    _check_qkv(query, key, value)
    query_map = elu_feature_map(query)  # [N, L, H, D]
    key_map = elu_feature_map(key)  # [N, S, H, D]
    # phi(K)^T V: one D x D summary of all S keys and values per head
    key_value = torch.einsum("nshd,nshv->nhdv", key_map, value)  # [N, H, D, D]
    message = torch.einsum("nlhd,nhdv->nlhv", query_map, key_value)  # [N, L, H, D]
    if not normalize:
        return message
    key_sum = key_map.sum(dim=1)  # [N, H, D]
    normalizer = torch.einsum("nlhd,nhd->nlh", query_map, key_sum) + eps  # [N, L, H]
    return message / normalizer[..., None]


def softmax_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Ordinary scaled dot-product attention, ``softmax(Q K^T / sqrt(D)) V`` (chapter 4).

    Same shapes as :func:`linear_attention`; it builds the full ``[N, H, L, S]`` weight matrix and
    is here only to compare against (cost and memory grow with ``L * S``).
    """
    _check_qkv(query, key, value)
    scores = torch.einsum("nlhd,nshd->nhls", query, key) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores, dim=-1)  # [N, H, L, S]
    return torch.einsum("nhls,nshd->nlhd", weights, value)


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "attention expects [N, L, H, D] tensors, got "
            f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if key.shape != value.shape:
        raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} must match")
    if query.shape[0] != key.shape[0] or query.shape[2:] != key.shape[2:]:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} must agree in batch, heads "
            "and channels per head"
        )


class EncoderLayer(nn.Module):
    """One attention update ``x <- x + message(x, source)``, Fig. 3 (chapter 4).

    LoFTR's encoder layer: eq. 11 projections ``W^Q, W^K, W^V`` (no bias), multi-head linear
    attention, a merge projection and LayerNorm, then an MLP on ``[x, message]`` (2C -> 2C -> C,
    ReLU, no bias) and a second LayerNorm; the result is added to ``x`` (residual).
    Self-attention: ``source = x``.  Cross-attention: ``source`` = the other image.
    ``attention_dim`` is eq. 11's ``C_1``, the width of Q, K, V (the merge maps it back to C);
    ``mlp_dim`` the hidden width of the MLP.  None = LoFTR's widths (``d_model`` and
    ``2 * d_model``); smaller widths make the layer cheaper (BGNet's defaults, chapter 6).
    """

    def __init__(
        self, d_model: int, nhead: int, *, normalize: bool = True, attention_dim: int | None = None,
        mlp_dim: int | None = None,
    ) -> None:
        super().__init__()
        attention_dim = d_model if attention_dim is None else attention_dim
        mlp_dim = 2 * d_model if mlp_dim is None else mlp_dim
        if mlp_dim <= 0:
            raise ValueError(f"mlp_dim must be positive, got {mlp_dim}")
        if d_model <= 0 or nhead <= 0 or attention_dim <= 0 or attention_dim % nhead != 0:
            raise ValueError(
                f"attention_dim ({attention_dim}, default d_model {d_model}) must be a positive "
                f"multiple of nhead ({nhead})"
            )
        self.d_model = d_model
        self.attention_dim = attention_dim
        self.nhead = nhead
        self.head_dim = attention_dim // nhead
        self.normalize = normalize
        self.q_proj = nn.Linear(d_model, attention_dim, bias=False)  # W^Q of eq. 11
        self.k_proj = nn.Linear(d_model, attention_dim, bias=False)  # W^K
        self.v_proj = nn.Linear(d_model, attention_dim, bias=False)  # W^V
        self.merge = nn.Linear(attention_dim, d_model, bias=False)  # W_L1 of Fig. 3
        self.norm1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(  # W_L2 of Fig. 3, on the concatenation [x, message]
            nn.Linear(2 * d_model, mlp_dim, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, d_model, bias=False),
        )
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x ``[N, L, C]`` attends to source ``[N, S, C]``; returns ``[N, L, C]``."""
        if x.dim() != 3 or source.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"expected x [N, L, {self.d_model}] and source [N, S, {self.d_model}], got "
                f"{tuple(x.shape)} and {tuple(source.shape)}"
            )
        if source.shape[0] != x.shape[0] or source.shape[-1] != self.d_model:
            raise ValueError(f"source {tuple(source.shape)} does not fit x {tuple(x.shape)}")
        batch = x.shape[0]
        query = self.q_proj(x).view(batch, -1, self.nhead, self.head_dim)  # [N, L, H, D]
        key = self.k_proj(source).view(batch, -1, self.nhead, self.head_dim)  # [N, S, H, D]
        value = self.v_proj(source).view(batch, -1, self.nhead, self.head_dim)  # [N, S, H, D]
        message = linear_attention(query, key, value, normalize=self.normalize)  # [N, L, H, D]
        message = self.merge(message.reshape(batch, -1, self.attention_dim))  # [N, L, C]
        message = self.norm1(message)
        message = self.mlp(torch.cat([x, message], dim=2))  # [N, L, 2C] -> [N, L, C]
        message = self.norm2(message)
        return x + message

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, attention_dim={self.attention_dim}, nhead={self.nhead}, "
                f"mlp_dim={self.mlp[0].out_features}, normalize={self.normalize}")


class SelfCrossStack(nn.Module):
    """``depth`` repetitions of (self-attention, cross-attention), eq. 5-6 (chapter 4).

    Each repetition first updates both images with self-attention, then both with
    cross-attention, and the two cross updates read the *post-self* features of the other image
    at the same time (eq. 5-6).  Read literally, eq. 5-6 feed the *pre*-self features of the
    other image into the cross step; like LoFTR we use the post-self ones (chapter 4 measures
    the difference).  LoFTR also updates the template first and lets the sample attend to the
    already-updated template; we keep the paper's simultaneous update.  Template and sample share
    every weight (Siamese, like LoFTR).  ``depth = 0`` returns the inputs unchanged.
    """

    def __init__(
        self, d_model: int, nhead: int, depth: int, *, normalize: bool = True,
        attention_dim: int | None = None, mlp_dim: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.depth = depth
        options = {"normalize": normalize, "attention_dim": attention_dim, "mlp_dim": mlp_dim}
        self.self_layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, **options) for _ in range(depth)
        )
        self.cross_layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, **options) for _ in range(depth)
        )
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # LoFTR's initialisation of its attention stack
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(
        self, template_feats: torch.Tensor, sample_feats: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """template_feats ``[N, L, C]``, sample_feats ``[N, S, C]`` -> the updated pair."""
        if template_feats.shape != sample_feats.shape:
            for self_layer, cross_layer in zip(self.self_layers, self.cross_layers, strict=True):
                template_feats = self_layer(template_feats, template_feats)
                sample_feats = self_layer(sample_feats, sample_feats)
                # simultaneous: both read the other image's features from before this step
                template_feats, sample_feats = (
                    cross_layer(template_feats, sample_feats),
                    cross_layer(sample_feats, template_feats),
                )
            return template_feats, sample_feats
        # Equal shapes (BGNet's case): both images go through each layer as one batch
        # [2N, L, C], the same arithmetic as two calls (every operation is per image and per
        # cell) with larger, faster matmuls.
        num = template_feats.shape[0]
        both = torch.cat([template_feats, sample_feats], dim=0)  # [2N, L, C]
        for self_layer, cross_layer in zip(self.self_layers, self.cross_layers, strict=True):
            both = self_layer(both, both)
            other = torch.cat([both[num:], both[:num]], dim=0)  # [2N, L, C], halves swapped
            both = cross_layer(both, other)
        return both[:num], both[num:]
