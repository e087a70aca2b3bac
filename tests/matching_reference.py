"""Independent references for the matching tests: eq. 13-14 on the whole score matrix and
Algorithm 1 as a plain loop (chapter 5 builds the same from scratch)."""

import numpy as np
import torch


def score_matrix(template_feats: torch.Tensor, sample_feats: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Eq. 13 scaled: ``<f_a, f_b> / (C * temperature)``, [N, L, S]."""
    channels = template_feats.shape[-1]
    return torch.einsum("nlc,nsc->nls", template_feats, sample_feats) / (channels * temperature)


def dual_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 14: softmax over sample columns times softmax over template rows, [N, L, S]."""
    return torch.softmax(scores, dim=2) * torch.softmax(scores, dim=1)


def mnn_naive(match_prob, theta: float) -> list[tuple[int, int]]:
    """Algorithm 1 as a loop (argmax, first index wins) plus eq. 15: pairs (a, b) by a."""
    if isinstance(match_prob, torch.Tensor):
        match_prob = match_prob.detach().cpu().numpy()
    prob = np.asarray(match_prob)
    pairs = []
    for a in range(prob.shape[0]):
        b = int(np.argmax(prob[a, :]))
        if int(np.argmax(prob[:, b])) == a and prob[a, b] >= theta:
            pairs.append((a, b))
    return pairs
