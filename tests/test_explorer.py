"""The matching explorer (chapter 14): its decisions against a naive loop over 𝒫, its ground
truth against a known shift, the static snippet's payload against the data it was made from,
and the live view redrawing when a control moves.  Clicking in a browser is tested on the built
book (tests/test_book_html.py)."""

from __future__ import annotations

import base64
import json
import re
import warnings

import numpy as np
import pytest
import torch

from bgnet_lite.explorer import (
    describe_cell,
    explorer_data,
    explorer_html,
    html_bytes,
    live_explorer,
    match_decisions,
)
from bgnet_lite.methods import create_model


def naive_decisions(match_prob: np.ndarray, theta: float):
    """Algorithm 1 with eq. 15 by loops: for sample cell s, the best template cell a; kept if
    s is also a's best sample cell and P[a, s] >= theta."""
    template_cells, sample_cells = match_prob.shape
    best, mutual, kept = [], [], []
    for s in range(sample_cells):
        column = [match_prob[a, s] for a in range(template_cells)]
        a_best = column.index(max(column))
        row = [match_prob[a_best, t] for t in range(sample_cells)]
        is_mutual = row.index(max(row)) == s
        best.append(a_best)
        mutual.append(is_mutual)
        kept.append(is_mutual and match_prob[a_best, s] >= theta)
    return best, mutual, kept


@pytest.mark.parametrize("theta", [0.0, 0.05, 0.3])
def test_decisions_match_a_naive_loop(theta):
    generator = np.random.default_rng(1)
    scores = generator.normal(size=(12, 12)) * 3
    # a dual softmax, as eq. 14 gives, so some entries pass theta
    prob = (np.exp(scores) / np.exp(scores).sum(0)) * (np.exp(scores).T / np.exp(scores).sum(1)).T
    decisions = match_decisions(prob.astype(np.float32), theta)
    best, mutual, kept = naive_decisions(prob.astype(np.float32), theta)
    assert decisions["best"].tolist() == best
    assert decisions["mutual"].tolist() == mutual
    assert decisions["kept"].tolist() == kept
    assert 0 < sum(mutual) and (theta == 0.0) == (sum(kept) == sum(mutual))


@pytest.fixture(scope="module")
def shifted_pair():
    torch.manual_seed(0)
    model = create_model("bgnet-s5", weights="none").eval()
    template = torch.rand(3, 64, 64)
    sample = torch.roll(template, shifts=8, dims=2)  # one 1/8 cell to the right
    # the generator's flow: sample pixel (x, y) shows template pixel (x - 8, y); NaN where the
    # roll brought in the other border
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    flow = torch.stack([xs - 8, ys])
    flow[:, :, :8] = float("nan")
    mask = torch.zeros(64, 64)
    mask[10:20, 30:40] = 1
    item = {"template": template, "sample": sample, "flow": flow, "mask": mask}
    return model, item


def test_ground_truth_cells_follow_the_shift(shifted_pair):
    model, item = shifted_pair
    data = explorer_data(model, item, title="shifted")
    height, width = data["grid"]
    assert (height, width) == (8, 8)
    for cell in range(height * width):
        row, col = divmod(cell, width)
        expected = -1 if col == 0 else row * width + col - 1  # hand-computed: one cell left
        assert data["truth"][cell] == expected, cell
    text = describe_cell(data, 2 * width + 3)
    assert "sample cell (row 2, col 3)" in text and "Ground truth: (row 2, col 2)" in text
    assert "Ground truth: none" in describe_cell(data, 2 * width)


def test_static_snippet_carries_the_data(shifted_pair):
    model, item = shifted_pair
    pairs = [explorer_data(model, item, title="a"), explorer_data(model, item, theta=0.0,
                                                                   title="b </script>")]
    snippet = explorer_html(pairs)
    assert html_bytes(snippet) == len(snippet.encode())
    assert "http" not in snippet  # offline: no address of any kind
    payload_text = re.search(r'class="bgnet-explorer-data">(.*?)</script>', snippet, re.S)[1]
    payload = json.loads(payload_text)
    assert [pair["title"] for pair in payload] == ["a", "b </script>"]
    for pair, data in zip(payload, pairs, strict=True):
        cells = data["grid"][0] * data["grid"][1]
        columns = np.frombuffer(base64.b64decode(pair["prob"]), np.uint8).reshape(cells, cells)
        # each row is one sample cell's column of P, scaled so its maximum is 255
        assert (columns.max(axis=1) == 255).all()
        expected = np.round(255 * data["match_prob"].T / data["match_prob"].max(axis=0)[:, None])
        assert np.abs(columns.astype(int) - expected).max() == 0
        assert pair["best"] == data["best"].tolist() and pair["truth"] == data["truth"].tolist()
        assert pair["kept"] == data["kept"].astype(int).tolist()
    assert sum(payload[1]["kept"]) == sum(payload[1]["mutual"])  # theta 0 keeps every mutual


def test_live_view_redraws_on_every_control(shifted_pair):
    model, item = shifted_pair
    torch.manual_seed(1)
    other = create_model("bgnet-s5", weights="none").eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        box = live_explorer({"depth a": model, "depth b": other}, item)
    # every glyph drawn exists in matplotlib's fonts (a missing one warns, with a path)
    assert not [str(w.message) for w in caught if "Glyph" in str(w.message)]
    for name, value in (("row", 1), ("col", 6), ("model", "depth b")):
        before = box.image.value
        box.controls[name].value = value
        assert box.image.value != before, name
    # theta: from the lowest value (every mutual pair kept) to the highest (few or none)
    box.controls["theta"].value = box.controls["theta"].options[0]
    before = box.image.value
    box.controls["theta"].value = box.controls["theta"].options[-1]
    assert box.image.value != before
