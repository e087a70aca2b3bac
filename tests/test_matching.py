"""Eq. 8 and 13-15, Algorithm 1, chunked matching and ground-truth cells, against references."""

import math

import numpy as np
import pytest
import torch
from matching_reference import dual_softmax, mnn_naive, score_matrix

from bgnet_lite.methods.bgnet.matching import (
    MatchConfig,
    match_chunked,
    match_dense,
    mutual_nearest_neighbours,
)
from bgnet_lite.methods.bgnet.subtraction import matched_subtraction, soft_matched_subtraction
from bgnet_lite.metrics import matching_accuracy
from bgnet_lite.supervision import flow_to_cell_targets


def pairs_from(sample_to_template: torch.Tensor) -> list[tuple[int, int]]:
    """[S] index vector -> sorted (a, b) pairs."""
    return sorted((a, b) for b, a in enumerate(sample_to_template.tolist()) if a >= 0)


def numpy_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


# ----------------------------------------------------------------------------- eq. 13-14


def test_score_matrix_matches_numpy():
    rng = np.random.default_rng(0)
    template = rng.normal(size=(2, 5, 6))
    sample = rng.normal(size=(2, 7, 6))
    expected = np.einsum("nlc,nsc->nls", template, sample) / (6 * 0.1)
    scores = score_matrix(torch.from_numpy(template), torch.from_numpy(sample), 0.1)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)


def test_dual_softmax_matches_numpy():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2, 5, 7)) * 3
    expected = numpy_softmax(scores, axis=2) * numpy_softmax(scores, axis=1)
    np.testing.assert_allclose(dual_softmax(torch.from_numpy(scores)).numpy(), expected, rtol=1e-12)


def test_match_dense_probabilities_equal_eq14():
    gen = torch.Generator().manual_seed(2)
    template = torch.randn(2, 30, 16, generator=gen)
    sample = torch.randn(2, 25, 16, generator=gen)
    for chunk_size in (7, 1024):
        result = match_dense(template, sample, MatchConfig(temperature=0.1, chunk_size=chunk_size))
        expected = dual_softmax(score_matrix(template.double(), sample.double(), 0.1))
        torch.testing.assert_close(result.match_prob.double(), expected, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- Algorithm 1


def test_mnn_naive_hand_case():
    prob = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.2, 0.3, 0.6],
            [0.1, 0.5, 0.7],  # row 2 prefers column 2, but column 2 prefers row 2 -> match
        ]
    )
    assert mnn_naive(prob, 0.0) == [(0, 0), (2, 2)]
    assert mnn_naive(prob, 0.8) == [(0, 0)]
    # ties: the first index wins on both axes
    tied = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert mnn_naive(tied, 0.0) == [(0, 0)]


def tie_heavy_matrices(seed: int):
    """Integer-valued [L, S] matrices with duplicated rows and columns (many exact ties)."""
    rng = np.random.default_rng(seed)
    for rows, cols, top in [(6, 6, 2), (9, 5, 3), (5, 11, 4), (17, 13, 3), (1, 4, 2), (4, 1, 2)]:
        prob = rng.integers(0, top, size=(rows, cols)).astype(np.float64)
        if rows > 2:
            prob[rows - 1] = prob[0]
        if cols > 2:
            prob[:, cols - 1] = prob[:, 1]
        yield prob


@pytest.mark.parametrize("theta", [0.0, 1.0, 1.5, 2.0, 3.0])
def test_mutual_nearest_neighbours_equals_loop_with_ties(theta):
    for seed in range(6):
        for prob in tie_heavy_matrices(seed):
            batch = torch.from_numpy(np.stack([prob, prob[::-1].copy()]))
            sample_to_template, matched_prob = mutual_nearest_neighbours(batch, theta)
            for n in range(2):
                expected = mnn_naive(batch[n].numpy(), theta)
                assert pairs_from(sample_to_template[n]) == expected
                for a, b in expected:
                    assert matched_prob[n, b].item() == batch[n, a, b].item()
                unmatched = sample_to_template[n] < 0
                assert (matched_prob[n][unmatched] == 0).all()


def test_mutual_nearest_neighbours_random_floats():
    gen = torch.Generator().manual_seed(3)
    prob = torch.rand(3, 20, 15, generator=gen)
    sample_to_template, _ = mutual_nearest_neighbours(prob, 0.5)
    for n in range(3):
        assert pairs_from(sample_to_template[n]) == mnn_naive(prob[n], 0.5)


# ----------------------------------------------------------------------------- dense vs chunked


def tied_features(length: int, samples: int, channels: int, seed: int):
    """Small-integer features with duplicated positions, so the probabilities tie exactly."""
    gen = torch.Generator().manual_seed(seed)
    template = torch.randint(-2, 3, (2, length, channels), generator=gen).float()
    sample = torch.randint(-2, 3, (2, samples, channels), generator=gen).float()
    for copy in range(length // 4, length, length // 4):
        template[:, copy] = template[:, 3]
    for copy in range(samples // 3, samples, samples // 3):
        sample[:, copy] = sample[:, 2]
    return template, sample


def count_tied_maxima(prob: torch.Tensor) -> int:
    column_ties = (prob == prob.amax(dim=1, keepdim=True)).sum(dim=1) > 1
    row_ties = (prob == prob.amax(dim=2, keepdim=True)).sum(dim=2) > 1
    return int(column_ties.sum() + row_ties.sum())


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 16, 44, 45, 46, 1000])
@pytest.mark.parametrize("theta", [0.0, 0.05, 0.2])
def test_chunked_equals_dense_with_ties(chunk_size, theta):
    template, sample = tied_features(45, 38, 8, seed=chunk_size)
    config = MatchConfig(theta=theta, temperature=0.5, chunk_size=chunk_size)
    dense = match_dense(template, sample, config)
    chunked = match_chunked(template, sample, config)
    assert count_tied_maxima(dense.match_prob) > 0  # the tie rule is really exercised
    assert chunked.match_prob is None
    assert torch.equal(chunked.sample_to_template, dense.sample_to_template)
    assert torch.equal(chunked.matched_prob, dense.matched_prob)
    for n in range(2):
        expected = mnn_naive(dense.match_prob[n], theta)
        assert pairs_from(dense.sample_to_template[n]) == expected
        assert pairs_from(chunked.sample_to_template[n]) == expected


@pytest.mark.parametrize("chunk_size", [5, 32, 64, 100])
def test_chunked_equals_dense_random_features(chunk_size):
    gen = torch.Generator().manual_seed(4)
    template = torch.randn(2, 64, 32, generator=gen)
    sample = torch.randn(2, 81, 32, generator=gen)
    config = MatchConfig(theta=0.01, temperature=0.1, chunk_size=chunk_size)
    dense = match_dense(template, sample, config)
    chunked = match_chunked(template, sample, config)
    assert torch.equal(chunked.sample_to_template, dense.sample_to_template)
    assert torch.equal(chunked.matched_prob, dense.matched_prob)
    # continuous features: no near-ties, so the textbook formula gives the same matches
    reference = dual_softmax(score_matrix(template.double(), sample.double(), 0.1))
    for n in range(2):
        assert pairs_from(dense.sample_to_template[n]) == mnn_naive(reference[n], 0.01)
    assert (dense.sample_to_template >= 0).sum() > 0


def test_matching_recovers_a_permutation():
    gen = torch.Generator().manual_seed(5)
    template = torch.randn(1, 50, 64, generator=gen)
    order = torch.randperm(50, generator=gen)
    sample = template[:, order] + 0.05 * torch.randn(1, 50, 64, generator=gen)
    result = match_chunked(template, sample, MatchConfig(theta=0.2, chunk_size=16))
    assert torch.equal(result.sample_to_template[0], order)


def test_match_dense_gives_gradient_to_features():
    template = torch.randn(1, 10, 8, requires_grad=True)
    sample = torch.randn(1, 12, 8, requires_grad=True)
    result = match_dense(template, sample, MatchConfig(chunk_size=4))
    result.match_prob.log().sum().backward()
    assert template.grad is not None and template.grad.abs().sum() > 0
    assert sample.grad is not None and sample.grad.abs().sum() > 0


def test_matching_rejects_bad_input():
    with pytest.raises(ValueError):
        match_dense(torch.zeros(1, 4, 8), torch.zeros(1, 4, 6), MatchConfig())
    with pytest.raises(ValueError):
        match_chunked(torch.zeros(1, 4, 8), torch.zeros(2, 4, 8), MatchConfig())
    with pytest.raises(ValueError):
        MatchConfig(chunk_size=0)
    with pytest.raises(ValueError):
        MatchConfig(temperature=0.0)


# ----------------------------------------------------------------------------- eq. 8


def test_matched_subtraction_equals_loop():
    gen = torch.Generator().manual_seed(6)
    sample = torch.randn(2, 3, 2, 4, generator=gen)
    template = torch.randn(2, 3, 3, 3, generator=gen)
    sample_to_template = torch.randint(-1, 9, (2, 8), generator=gen)
    out = matched_subtraction(sample, template, sample_to_template)
    expected = sample.clone()
    for n in range(2):
        for b in range(8):
            a = int(sample_to_template[n, b])
            if a >= 0:
                ys, xs = divmod(b, 4)
                yt, xt = divmod(a, 3)
                expected[n, :, ys, xs] = sample[n, :, ys, xs] - template[n, :, yt, xt]
    torch.testing.assert_close(out, expected)


def test_matched_subtraction_gradient_flows_through_gathered_features():
    sample = torch.randn(1, 2, 1, 3, requires_grad=True)
    template = torch.randn(1, 2, 1, 3, requires_grad=True)
    out = matched_subtraction(sample, template, torch.tensor([[2, -1, 2]]))
    out.sum().backward()
    assert torch.equal(sample.grad, torch.ones_like(sample))
    # template cell 2 is subtracted twice, the others never
    assert torch.equal(template.grad[0, :, 0], torch.tensor([[0.0, 0.0, -2.0]] * 2))


def test_matched_subtraction_rejects_bad_index():
    with pytest.raises(ValueError):
        matched_subtraction(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError):
        matched_subtraction(
            torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.tensor([[0, 1, 2, 4]])
        )


def test_soft_matched_subtraction_equals_loop():
    gen = torch.Generator().manual_seed(7)
    sample = torch.randn(2, 3, 2, 2, generator=gen)
    template = torch.randn(2, 3, 1, 5, generator=gen)
    match_prob = torch.rand(2, 5, 4, generator=gen)
    out = soft_matched_subtraction(sample, template, match_prob)
    expected = torch.empty_like(sample)
    for n in range(2):
        for b in range(4):
            weighted = torch.zeros(3)
            for a in range(5):
                weighted += match_prob[n, a, b] * template[n, :, 0, a]
            expected[n, :, b // 2, b % 2] = sample[n, :, b // 2, b % 2] - weighted
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- supervision


def identity_flow(image_hw, flow_stride):
    """[1, 2, Hf, Wf] flow whose entry is the pixel coordinate of its own sample point."""
    flow_h, flow_w = image_hw[0] // flow_stride, image_hw[1] // flow_stride
    xs = (torch.arange(flow_w) + 0.5) * flow_stride - 0.5
    ys = (torch.arange(flow_h) + 0.5) * flow_stride - 0.5
    grid = torch.stack([xs[None, :].expand(flow_h, -1), ys[:, None].expand(-1, flow_w)])
    return grid[None].clone()  # [1, 2, Hf, Wf]


@pytest.mark.parametrize("flow_stride", [1, 2, 8])
def test_identity_flow_maps_each_cell_to_itself(flow_stride):
    flow = identity_flow((32, 48), flow_stride)
    cells = flow_to_cell_targets(flow, (32, 48), (4, 6))
    assert torch.equal(cells, torch.arange(24)[None])


def test_shift_by_one_cell_shifts_index():
    flow = identity_flow((32, 48), 1)
    right = flow.clone()
    right[:, 0] += 8  # the template point is one cell (8 px) to the right
    cells = flow_to_cell_targets(right, (32, 48), (4, 6)).view(4, 6)
    expected = torch.arange(24).view(4, 6) + 1
    expected[:, 5] = -1  # would fall off the template's right edge
    assert torch.equal(cells, expected)
    down = flow.clone()
    down[:, 1] += 8
    cells = flow_to_cell_targets(down, (32, 48), (4, 6)).view(4, 6)
    expected = torch.arange(24).view(4, 6) + 6
    expected[3] = -1
    assert torch.equal(cells, expected)


def test_nan_flow_gives_minus_one():
    flow = identity_flow((32, 48), 8)  # one flow value per feature cell
    flow[0, 0, 1, 2] = float("nan")
    cells = flow_to_cell_targets(flow, (32, 48), (4, 6))
    expected = torch.arange(24)
    expected[1 * 6 + 2] = -1
    assert torch.equal(cells[0], expected)
    full = identity_flow((32, 48), 1)
    full[0, :, 8:16, 16:24] = float("nan")  # exactly the pixels of cell (x=2, y=1)
    assert torch.equal(flow_to_cell_targets(full, (32, 48), (4, 6))[0], expected)


def test_flow_to_cell_targets_rejects_bad_shapes():
    with pytest.raises(ValueError):
        flow_to_cell_targets(torch.zeros(1, 3, 4, 4), (32, 32), (4, 4))
    with pytest.raises(ValueError):
        flow_to_cell_targets(torch.zeros(1, 2, 4, 5), (32, 32), (4, 4))


def test_matching_accuracy_hand_case():
    # feature width 4; sample cells 0..4
    sample_to_template = torch.tensor([[5, 0, -1, 15, 10]])
    gt_cells = torch.tensor([[6, 10, 3, -1, 0]])
    # cell 5 = (x1, y1) vs 6 = (x2, y1): distance 1 -> within
    # cell 0 = (x0, y0) vs 10 = (x2, y2): distance 2 -> not
    # sample 2 unmatched, sample 3 has no ground truth
    # cell 10 = (x2, y2) vs 0 = (x0, y0): not; wrap-around pairs like 3 vs 4 must not count
    stats = matching_accuracy(sample_to_template, gt_cells, feat_w=4)
    assert stats == {
        "matches": 4,
        "evaluated": 3,
        "within_one_cell": 1,
        "share_within_one_cell": pytest.approx(1 / 3),
    }
    wrap = matching_accuracy(torch.tensor([[3]]), torch.tensor([[4]]), feat_w=4)
    assert wrap["within_one_cell"] == 0  # (x3, y0) vs (x0, y1): 3 cells apart in x
    empty = matching_accuracy(torch.tensor([[-1]]), torch.tensor([[2]]), feat_w=4)
    assert empty["matches"] == 0 and math.isnan(empty["share_within_one_cell"])


def test_no_grad_path_is_bit_identical_to_the_autograd_path():
    # without autograd the probabilities are computed in place (fewer L x S buffers); the
    # arithmetic must be the same to the last bit, or dense and chunked matches could differ
    template, sample = tied_features(45, 38, 8, seed=3)
    config = MatchConfig(theta=0.01, temperature=0.5, chunk_size=16)
    with torch.no_grad():
        plain = match_dense(template, sample, config)
    tracked = match_dense(template.clone().requires_grad_(True),
                          sample.clone().requires_grad_(True), config)
    assert tracked.match_prob.requires_grad and not plain.match_prob.requires_grad
    assert torch.equal(tracked.match_prob.detach(), plain.match_prob)
    assert torch.equal(tracked.sample_to_template, plain.sample_to_template)
    assert torch.equal(tracked.matched_prob.detach(), plain.matched_prob)
