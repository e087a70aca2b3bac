"""Linear attention (eq. 11-12) and the self/cross stack (eq. 5-6) against explicit loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from bgnet_lite.methods.bgnet.attention import (
    EncoderLayer,
    SelfCrossStack,
    elu_feature_map,
    linear_attention,
    softmax_attention,
)


def phi_scalar(value: float) -> float:
    return value + 1.0 if value > 0 else math.exp(value)  # elu(x) + 1


def linear_attention_loop(query, key, value, normalize, eps=1e-6):
    """Attention as a weighted sum, one query position at a time: weights phi(q_l) . phi(k_s)."""
    batch, length, heads, dim = query.shape
    samples = key.shape[1]
    out = torch.zeros(batch, length, heads, dim, dtype=torch.float64)
    for n in range(batch):
        for h in range(heads):
            for l_pos in range(length):
                q = [phi_scalar(v) for v in query[n, l_pos, h].tolist()]
                total = torch.zeros(dim, dtype=torch.float64)
                weight_sum = 0.0
                for s_pos in range(samples):
                    k = [phi_scalar(v) for v in key[n, s_pos, h].tolist()]
                    weight = sum(qi * ki for qi, ki in zip(q, k, strict=True))
                    total += weight * value[n, s_pos, h].double()
                    weight_sum += weight
                out[n, l_pos, h] = total / (weight_sum + eps) if normalize else total
    return out


def test_elu_feature_map_values():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    expected = torch.tensor([phi_scalar(v) for v in x.tolist()])
    torch.testing.assert_close(elu_feature_map(x), expected)
    # positive (in float32 it underflows to 0 only below about -17)
    assert (elu_feature_map(torch.linspace(-10, 10, 101)) > 0).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_attention_matches_loop(normalize):
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(2, 5, 3, 4, generator=gen, dtype=torch.float64)
    key = torch.randn(2, 7, 3, 4, generator=gen, dtype=torch.float64)
    value = torch.randn(2, 7, 3, 4, generator=gen, dtype=torch.float64)
    out = linear_attention(query, key, value, normalize=normalize)
    expected = linear_attention_loop(query, key, value, normalize)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_heads_are_independent():
    gen = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(1, 6, 4, 3, generator=gen) for _ in range(3))
    together = linear_attention(query, key, value)
    for h in range(4):
        alone = linear_attention(
            query[:, :, h : h + 1], key[:, :, h : h + 1], value[:, :, h : h + 1]
        )
        torch.testing.assert_close(together[:, :, h : h + 1], alone)


def test_softmax_attention_matches_formula():
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(1, 4, 2, 3, generator=gen, dtype=torch.float64)
    key = torch.randn(1, 5, 2, 3, generator=gen, dtype=torch.float64)
    value = torch.randn(1, 5, 2, 3, generator=gen, dtype=torch.float64)
    out = softmax_attention(query, key, value)
    for h in range(2):
        weights = torch.softmax(query[0, :, h] @ key[0, :, h].T / math.sqrt(3), dim=1)
        torch.testing.assert_close(out[0, :, h], weights @ value[0, :, h])


def test_attention_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        linear_attention(torch.zeros(1, 4, 2, 3), torch.zeros(1, 5, 2, 3), torch.zeros(1, 6, 2, 3))
    with pytest.raises(ValueError):
        linear_attention(torch.zeros(1, 4, 2, 3), torch.zeros(1, 5, 3, 3), torch.zeros(1, 5, 3, 3))


def encoder_layer_reference(layer: EncoderLayer, x, source):
    """Fig. 3 written out with the layer's weights; head h owns channels [h*D, (h+1)*D)."""
    heads, dim = layer.nhead, layer.head_dim
    query = x @ layer.q_proj.weight.T
    key = source @ layer.k_proj.weight.T
    value = source @ layer.v_proj.weight.T
    per_head = []
    for h in range(heads):
        channels = slice(h * dim, (h + 1) * dim)
        per_head.append(
            linear_attention_loop(
                query[:, :, None, channels],
                key[:, :, None, channels],
                value[:, :, None, channels],
                normalize=True,
            )[:, :, 0].to(x.dtype)
        )
    message = torch.cat(per_head, dim=2) @ layer.merge.weight.T
    message = F.layer_norm(message, (layer.d_model,), layer.norm1.weight, layer.norm1.bias)
    hidden = torch.relu(torch.cat([x, message], dim=2) @ layer.mlp[0].weight.T)
    message = hidden @ layer.mlp[2].weight.T
    message = F.layer_norm(message, (layer.d_model,), layer.norm2.weight, layer.norm2.bias)
    return x + message


@pytest.mark.parametrize("attention_dim", [None, 4, 12])
def test_encoder_layer_matches_reference(attention_dim):
    torch.manual_seed(3)
    layer = EncoderLayer(8, 2, attention_dim=attention_dim).double()
    assert layer.q_proj.weight.shape == (attention_dim or 8, 8)  # C_1 x C
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        layer.norm1.weight.uniform_(0.5, 1.5)
        layer.norm2.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    source = torch.randn(2, 4, 8, dtype=torch.float64)
    out = layer(x, source)
    assert out.shape == (2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(out, encoder_layer_reference(layer, x, source))


def test_encoder_layer_rejects_bad_heads_and_shapes():
    with pytest.raises(ValueError):
        EncoderLayer(10, 3)
    with pytest.raises(ValueError, match="attention_dim"):
        EncoderLayer(8, 2, attention_dim=5)
    with pytest.raises(ValueError):
        EncoderLayer(8, 2)(torch.zeros(1, 4, 6), torch.zeros(1, 4, 6))


def test_cross_attention_depends_on_source():
    torch.manual_seed(4)
    layer = EncoderLayer(16, 4)
    x = torch.randn(1, 6, 16)
    out_a = layer(x, torch.randn(1, 9, 16))
    out_b = layer(x, torch.randn(1, 9, 16))
    assert not torch.allclose(out_a, out_b, atol=1e-4)


def test_self_attention_is_permutation_equivariant():
    torch.manual_seed(5)
    layer = EncoderLayer(16, 4)
    x = torch.randn(2, 10, 16)
    order = torch.randperm(10)
    permuted_then_attended = layer(x[:, order], x[:, order])
    attended_then_permuted = layer(x, x)[:, order]
    torch.testing.assert_close(permuted_then_attended, attended_then_permuted)


def test_depth_zero_stack_is_identity():
    stack = SelfCrossStack(16, 4, 0)
    template, sample = torch.randn(1, 6, 16), torch.randn(1, 9, 16)
    out_template, out_sample = stack(template, sample)
    assert torch.equal(out_template, template) and torch.equal(out_sample, sample)
    with pytest.raises(ValueError):
        SelfCrossStack(16, 4, -1)


@pytest.mark.parametrize("sample_cells", [9, 6])  # 6 = equal shapes: the batched path
def test_stack_updates_both_images_simultaneously(sample_cells):
    torch.manual_seed(6)
    stack = SelfCrossStack(16, 4, 2)
    template, sample = torch.randn(2, 6, 16), torch.randn(2, sample_cells, 16)
    expected_template, expected_sample = template, sample
    for self_layer, cross_layer in zip(stack.self_layers, stack.cross_layers, strict=True):
        after_self_t = self_layer(expected_template, expected_template)
        after_self_s = self_layer(expected_sample, expected_sample)
        expected_template = cross_layer(after_self_t, after_self_s)  # eq. 5
        expected_sample = cross_layer(after_self_s, after_self_t)  # eq. 6
    out_template, out_sample = stack(template, sample)
    assert out_template.shape == (2, 6, 16) and out_sample.shape == (2, sample_cells, 16)
    torch.testing.assert_close(out_template, expected_template)
    torch.testing.assert_close(out_sample, expected_sample)
