"""Feature matching, eq. 13-15 and Algorithm 1 (chapter 5, "Matching").

The subtraction along the matches (eq. 8) is ``subtraction.py``; the ground-truth targets of
the optional matching loss are ``bgnet_lite.supervision``; the share of correct matches is
``bgnet_lite.metrics.matching_accuracy``.

Index convention: template positions ``a in [0, L)``, sample positions ``b in [0, S)``, both
flattened row-major from ``[H, W]`` (``index = y * W + x``).  Score and probability matrices are
``[N, L, S]`` with template rows and sample columns.

Deviations from the paper, each deliberate:

* Eq. 13 scores are divided by ``C * temperature`` (LoFTR: both features divided by ``sqrt(C)``,
  then a temperature of 0.1).  The raw inner product of 128- to 512-d features is in the hundreds
  and would saturate the softmax of eq. 14 into a hard one-hot.
* Algorithm 1 prints ``argmin`` over the probability matrix.  Nearest neighbours under a
  *probability* are the largest entries, so we use ``argmax``.
* Ties: the first index wins on both axes (``torch.argmax`` / ``numpy.argmax`` semantics), exactly
  like the loop ``for a: b = argmax_k P[a, k]; keep (a, b) if a == argmax_l P[l, b]``.

Dense and chunked matching give identical matches.  Both compute the score matrix in the same row
blocks of ``config.chunk_size`` template rows, with the same operations in the same order, so every
probability is bit-for-bit the same; the chunked version merely recomputes a block instead of
keeping it.  Column maxima are merged across blocks with a strict ``>``, so an earlier block (a
smaller template index) keeps a tie, which is the first-index rule again.  (This relies only on
torch giving the same result for the same operation on the same shapes, device and thread
count.)  The block size itself changes the rounding of the column statistics in the last bit, so
two *different* chunk sizes can disagree on an exact near-tie; the same config never does.
The textbook eq. 14, ``softmax(S, rows) * softmax(S, columns)`` of the whole score matrix, agrees
with ``match_prob`` to float rounding (chapter 5 builds it from scratch; the tests compare).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MatchConfig:
    """Matching settings (chapter 5).

    theta: eq. 15 threshold on the dual-softmax probability.  temperature: score scaling (see the
    module docstring).  chunk_size: template rows per block (memory of match_chunked is about
    ``chunk_size * S`` floats per temporary).
    """

    theta: float = 0.2
    temperature: float = 0.1
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {self.chunk_size}")


@dataclass
class MatchResult:
    """Output of match_dense / match_chunked (chapter 5).

    sample_to_template ``[N, S]`` long: matched template index for each sample cell, -1 if none.
    matched_prob ``[N, S]``: ``P[a, b]`` of the match, 0 where unmatched.
    match_prob ``[N, L, S]`` (dense only, differentiable) or None.
    """

    sample_to_template: torch.Tensor
    matched_prob: torch.Tensor
    match_prob: torch.Tensor | None = None


# ----------------------------------------------------------------------------- eq. 13-14


def _check_feats(
    template_feats: torch.Tensor, sample_feats: torch.Tensor, temperature: float
) -> float:
    """Validate ``[N, L, C]`` / ``[N, S, C]`` features; return the score scale 1 / (C * T)."""
    if template_feats.dim() != 3 or sample_feats.dim() != 3:
        raise ValueError(
            "matching expects template_feats [N, L, C] and sample_feats [N, S, C], got "
            f"{tuple(template_feats.shape)} and {tuple(sample_feats.shape)}"
        )
    if template_feats.shape[0] != sample_feats.shape[0]:
        raise ValueError(
            f"batch sizes differ: {template_feats.shape[0]} vs {sample_feats.shape[0]}"
        )
    if template_feats.shape[2] != sample_feats.shape[2]:
        raise ValueError(
            f"channel counts differ: {template_feats.shape[2]} vs {sample_feats.shape[2]}"
        )
    if template_feats.shape[1] == 0 or sample_feats.shape[1] == 0:
        raise ValueError("cannot match an empty feature set")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return 1.0 / (template_feats.shape[2] * temperature)


def _score_block(
    template_rows: torch.Tensor, sample_feats: torch.Tensor, scale: float
) -> torch.Tensor:
    """Scores of some template rows ``[N, r, C]`` against all samples ``[N, S, C]`` -> [N, r, S]."""
    return torch.matmul(template_rows, sample_feats.transpose(1, 2)) * scale


def _row_blocks(length: int, block: int) -> list[tuple[int, int]]:
    return [(start, min(start + block, length)) for start in range(0, length, block)]


def _log_normalizers(
    template_feats: torch.Tensor,
    sample_feats: torch.Tensor,
    scale: float,
    block: int,
    keep_scores: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Row and column log-sum-exp of the score matrix, one block of template rows at a time.

    Returns row_lse ``[N, L, 1]``, col_lse ``[N, 1, S]`` and (if keep_scores) the score blocks.
    A row lies inside one block; a column is merged across blocks (running max and rescaled sum,
    as in online softmax).  Maxima are detached: they cancel in the value, and the gradient of a
    log-sum-exp does not need them.
    """
    row_lse_blocks = []
    score_blocks = []
    col_max = col_sum = None
    for start, stop in _row_blocks(template_feats.shape[1], block):
        scores = _score_block(template_feats[:, start:stop], sample_feats, scale)  # [N, r, S]
        row_max = scores.amax(dim=2, keepdim=True).detach()  # [N, r, 1]
        row_sum = _exp_shifted(scores, row_max).sum(dim=2, keepdim=True)
        row_lse_blocks.append(row_max + torch.log(row_sum))
        block_max = scores.amax(dim=1, keepdim=True).detach()  # [N, 1, S]
        if col_max is None:
            col_max = block_max
            col_sum = _exp_shifted(scores, col_max).sum(dim=1, keepdim=True)
        else:
            new_max = torch.maximum(col_max, block_max)
            col_sum = col_sum * torch.exp(col_max - new_max) + _exp_shifted(
                scores, new_max
            ).sum(dim=1, keepdim=True)
            col_max = new_max
        if keep_scores:
            score_blocks.append(scores)
    col_lse = col_max + torch.log(col_sum)  # [N, 1, S]
    return torch.cat(row_lse_blocks, dim=1), col_lse, score_blocks


def _block_match_prob(
    scores: torch.Tensor, row_lse: torch.Tensor, col_lse: torch.Tensor
) -> torch.Tensor:
    """Eq. 14 for one block: ``exp(s - row_lse) * exp(s - col_lse)`` in one exp. [N, r, S]."""
    if _needs_graph(scores):
        return torch.exp(2.0 * scores - row_lse - col_lse)
    prob = scores * 2.0  # the same operations in place: bit-identical, no new L x S buffers
    return prob.sub_(row_lse).sub_(col_lse).exp_()


def _needs_graph(tensor: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and tensor.requires_grad


def _exp_shifted(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``exp(scores - shift)``; without autograd in one new buffer instead of two (the L x S
    temporaries, not the arithmetic, dominate the CPU time of matching at inference)."""
    if _needs_graph(scores):
        return torch.exp(scores - shift)
    return torch.sub(scores, shift).exp_()


# ----------------------------------------------------------------------------- eq. 15, Alg. 1


def mutual_nearest_neighbours(
    match_prob: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 (with argmax) plus the eq. 15 threshold, vectorised (chapter 5).

    match_prob ``[N, L, S]`` -> (sample_to_template ``[N, S]`` long, -1 = unmatched;
    matched_prob ``[N, S]``, 0 where unmatched).  ``(a, b)`` is a match iff ``b`` is the first
    argmax of row ``a``, ``a`` the first argmax of column ``b``, and ``P[a, b] >= theta``.
    """
    if match_prob.dim() != 3:
        raise ValueError(f"expected match_prob [N, L, S], got {tuple(match_prob.shape)}")
    row_best = match_prob.argmax(dim=2)  # [N, L] best sample for each template cell
    col_best_prob, col_best = match_prob.max(dim=1)  # [N, S] best template cell for each sample
    return _select_mutual(row_best, col_best, col_best_prob, theta)


def _select_mutual(
    row_best: torch.Tensor, col_best: torch.Tensor, col_best_prob: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    sample_index = torch.arange(col_best.shape[1], device=col_best.device)  # [S]
    mutual = row_best.gather(1, col_best) == sample_index  # [N, S]
    keep = mutual & (col_best_prob >= theta)
    sample_to_template = torch.where(keep, col_best, torch.full_like(col_best, -1))
    matched_prob = torch.where(keep, col_best_prob, torch.zeros_like(col_best_prob))
    return sample_to_template, matched_prob


# ----------------------------------------------------------------------------- dense / chunked


def match_dense(
    template_feats: torch.Tensor, sample_feats: torch.Tensor, config: MatchConfig
) -> MatchResult:
    """Eq. 13-15 keeping the whole ``[N, L, S]`` probability matrix (chapter 5).

    template_feats ``[N, L, C]``, sample_feats ``[N, S, C]``.  match_prob is differentiable (for
    the matching loss and soft subtraction); the matches are discrete.
    """
    scale = _check_feats(template_feats, sample_feats, config.temperature)
    row_lse, col_lse, score_blocks = _log_normalizers(
        template_feats, sample_feats, scale, config.chunk_size, keep_scores=True
    )
    prob_blocks = [
        _block_match_prob(scores, row_lse[:, start:stop], col_lse)
        for (start, stop), scores in zip(
            _row_blocks(template_feats.shape[1], config.chunk_size), score_blocks, strict=True
        )
    ]
    # one block (the usual case) needs no copy
    match_prob = prob_blocks[0] if len(prob_blocks) == 1 else torch.cat(prob_blocks, dim=1)
    sample_to_template, matched_prob = mutual_nearest_neighbours(match_prob, config.theta)
    return MatchResult(sample_to_template, matched_prob, match_prob)


@torch.no_grad()
def match_chunked(
    template_feats: torch.Tensor, sample_feats: torch.Tensor, config: MatchConfig
) -> MatchResult:
    """Eq. 13-15 without ever holding the ``L x S`` matrix; same matches as match_dense (chapter 5).

    Two passes over blocks of ``config.chunk_size`` template rows: the first gathers the row and
    column log-sum-exp, the second recomputes each block's probabilities and keeps only the best
    sample of each row and the running best template cell of each column.  No gradient.
    """
    scale = _check_feats(template_feats, sample_feats, config.temperature)
    batch, length = template_feats.shape[:2]
    samples = sample_feats.shape[1]
    device = template_feats.device
    row_lse, col_lse, _ = _log_normalizers(
        template_feats, sample_feats, scale, config.chunk_size, keep_scores=False
    )
    row_best = torch.empty(batch, length, dtype=torch.long, device=device)  # [N, L]
    col_best = torch.zeros(batch, samples, dtype=torch.long, device=device)  # [N, S]
    col_best_prob = torch.full(
        (batch, samples), float("-inf"), dtype=col_lse.dtype, device=device
    )  # [N, S]
    for start, stop in _row_blocks(length, config.chunk_size):
        # recomputed with the very same operations as in the first pass: bit-identical scores
        scores = _score_block(template_feats[:, start:stop], sample_feats, scale)  # [N, r, S]
        prob = _block_match_prob(scores, row_lse[:, start:stop], col_lse)  # [N, r, S]
        row_best[:, start:stop] = prob.argmax(dim=2)
        block_best_prob, block_best = prob.max(dim=1)  # [N, S]
        better = block_best_prob > col_best_prob  # strict: an earlier block keeps a tie
        col_best_prob = torch.where(better, block_best_prob, col_best_prob)
        col_best = torch.where(better, block_best + start, col_best)
    sample_to_template, matched_prob = _select_mutual(
        row_best, col_best, col_best_prob, config.theta
    )
    return MatchResult(sample_to_template, matched_prob, None)
