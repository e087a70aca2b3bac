"""Focal loss (eq. 16) against torchvision and a NumPy formula; matching loss by hand."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from bgnet_lite.losses import focal_loss, matching_loss


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("target_form", ["float", "long", "channel"])
def test_binary_focal_equals_torchvision(reduction, target_form):
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 9, 11) * 3
    target = (torch.rand(3, 9, 11) < 0.3).float()
    reference = sigmoid_focal_loss(
        logits[:, 0], target, alpha=-1, gamma=2.0, reduction=reduction
    )
    given = {"float": target, "long": target.long(), "channel": target[:, None]}[target_form]
    assert torch.allclose(focal_loss(logits, given, reduction=reduction), reference, atol=1e-6)


def test_binary_focal_per_pixel_equals_torchvision():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 5, 6) * 4
    target = (torch.rand(2, 5, 6) < 0.5).float()
    reference = sigmoid_focal_loss(logits[:, 0], target, alpha=-1, gamma=2.0, reduction="none")
    assert torch.allclose(focal_loss(logits, target, reduction="none"), reference, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.25, 0.75, 0.95])
def test_alpha_balanced_binary_focal_equals_torchvision(alpha):
    torch.manual_seed(4)
    logits = torch.randn(2, 1, 7, 8) * 3
    target = (torch.rand(2, 7, 8) < 0.2).float()
    reference = sigmoid_focal_loss(logits[:, 0], target, alpha=alpha, gamma=2.0, reduction="none")
    assert torch.allclose(focal_loss(logits, target, alpha=alpha, reduction="none"), reference,
                          atol=1e-6)


def test_alpha_balanced_multiclass_weights_background_by_one_minus_alpha():
    logits = torch.tensor([[[[2.0, -1.0]], [[0.5, 0.0]], [[-1.0, 3.0]]]])  # [1, 3, 1, 2]
    target = torch.tensor([[[0, 2]]])
    probs = torch.softmax(logits, dim=1)
    p_bg, p_defect = probs[0, 0, 0, 0].item(), probs[0, 2, 0, 1].item()
    hand = [-0.2 * (1 - p_bg) ** 2 * math.log(p_bg),
            -0.8 * (1 - p_defect) ** 2 * math.log(p_defect)]
    loss = focal_loss(logits, target, alpha=0.8, reduction="none")
    assert loss.flatten().tolist() == pytest.approx(hand, rel=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(logits, target, alpha=1.5)


def test_multiclass_focal_equals_numpy_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 7, 4, 5)) * 2
    target = rng.integers(0, 7, size=(2, 4, 5))
    gamma = 2.0
    expected = []
    for n in range(2):
        for y in range(4):
            for x in range(5):
                scores = logits[n, :, y, x]
                probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
                p_t = probs[target[n, y, x]]
                expected.append(-((1 - p_t) ** gamma) * math.log(p_t))
    loss = focal_loss(torch.tensor(logits), torch.tensor(target), gamma=gamma)
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-9)
    summed = focal_loss(torch.tensor(logits), torch.tensor(target), gamma=gamma, reduction="sum")
    assert summed.item() == pytest.approx(np.sum(expected), rel=1e-9)


def test_gamma_zero_is_cross_entropy():
    torch.manual_seed(3)
    logits = torch.randn(2, 1, 6, 6)
    target = (torch.rand(2, 6, 6) < 0.4).float()
    assert torch.allclose(
        focal_loss(logits, target, gamma=0.0),
        F.binary_cross_entropy_with_logits(logits[:, 0], target),
        atol=1e-6,
    )
    logits = torch.randn(2, 7, 6, 6)
    classes = torch.randint(0, 7, (2, 6, 6))
    assert torch.allclose(
        focal_loss(logits, classes, gamma=0.0), F.cross_entropy(logits, classes), atol=1e-6
    )


def test_focal_hand_value_at_half_probability():
    # one pixel, logit 0 -> p = 0.5 for both labels: FL = 0.25 * log 2
    loss = focal_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1))
    assert loss.item() == pytest.approx(0.25 * math.log(2))


def test_focal_gradcheck():
    torch.manual_seed(4)
    logits = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (1, 2, 2))
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, target), (logits,))
    binary = torch.randn(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(1, 2, 2) < 0.5).double()
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, mask), (binary,))


def test_focal_refuses_bad_targets():
    with pytest.raises(ValueError, match="0/1"):
        focal_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 2, 2), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        focal_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="target must be"):
        focal_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        focal_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2), reduction="avg")


def test_matching_loss_by_hand():
    # L = 3 template cells (rows), S = 4 sample cells (columns)
    match_prob = torch.tensor(
        [[[0.70, 0.05, 0.10, 0.00],
          [0.10, 0.60, 0.20, 0.30],
          [0.05, 0.10, 0.50, 0.40]]],
        requires_grad=True,
    )
    gt_cells = torch.tensor([[0, 2, -1, 1]])  # sample cell 2 has no ground truth
    eps = 1e-6
    expected = -(math.log(0.70 + eps) + math.log(0.10 + eps) + math.log(0.30 + eps)) / 3
    loss = matching_loss(match_prob, gt_cells, eps=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/dP of -log(P + eps) / 3 at the three used entries, zero elsewhere
    expected_grad = torch.zeros(1, 3, 4)
    expected_grad[0, 0, 0] = -1 / (3 * (0.70 + eps))
    expected_grad[0, 2, 1] = -1 / (3 * (0.10 + eps))
    expected_grad[0, 1, 3] = -1 / (3 * (0.30 + eps))
    assert torch.allclose(match_prob.grad, expected_grad, rtol=1e-5)


def test_matching_loss_batches_pool_all_defined_cells():
    match_prob = torch.tensor([[[0.5, 0.2], [0.5, 0.8]], [[0.9, 0.25], [0.1, 0.75]]])
    gt_cells = torch.tensor([[1, -1], [0, 1]])
    expected = -(math.log(0.5 + 1e-6) + math.log(0.9 + 1e-6) + math.log(0.75 + 1e-6)) / 3
    assert matching_loss(match_prob, gt_cells).item() == pytest.approx(expected, rel=1e-6)


def test_matching_loss_without_ground_truth_is_zero_with_grad():
    match_prob = torch.rand(2, 3, 3, requires_grad=True)
    loss = matching_loss(match_prob, torch.full((2, 3), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert match_prob.grad is not None


def test_matching_loss_refuses_bad_cells():
    with pytest.raises(ValueError, match="gt_cells"):
        matching_loss(torch.rand(1, 3, 4), torch.tensor([[0, 1, 3, 0]]))
    with pytest.raises(ValueError, match="gt_cells must be"):
        matching_loss(torch.rand(1, 3, 4), torch.tensor([[0, 1, 2]]))
