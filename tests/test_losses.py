"""Each training loss against a value computed by hand (see the comments)."""

import math

import pytest

torch = pytest.importorskip("torch")

from edgepack import losses

LN3 = math.log(3.0)


def test_kd_kl_hand_value_and_t_squared_scaling():
    s = torch.tensor([[0.0, 0.0]])  # p_S = [.5, .5]
    t = torch.tensor([[LN3, 0.0]])  # p_T = [.75, .25]
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # = 0.130812
    assert losses.kd_kl(s, t, 1.0).item() == pytest.approx(kl, abs=1e-6)
    # At T=2 the teacher logits 2*ln3 give the same p_T, so the loss is exactly T^2 * kl.
    assert losses.kd_kl(s, 2 * t, 2.0).item() == pytest.approx(4 * kl, abs=1e-6)
    assert losses.kd_kl(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_hard_ce_hand_value():
    assert losses.hard_ce(torch.tensor([[LN3, 0.0]]), torch.tensor([0])).item() == pytest.approx(-math.log(0.75))


def test_hidden_mse_masks_padding():
    h_S = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, L=2, H=2)
    h_T = torch.zeros(1, 2, 2)
    # only token 0 is real: (1^2 + 2^2) / (1 token * 2 dims)
    assert losses.hidden_mse(h_S, h_T, torch.tensor([[1, 0]])).item() == pytest.approx(2.5)
    assert losses.hidden_mse(h_S, h_T, torch.tensor([[1, 1]])).item() == pytest.approx(30 / 4)


def test_hidden_mse_with_projection():
    proj = torch.nn.Linear(1, 2)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0], [2.0]]))
        proj.bias.zero_()
    h_S = torch.tensor([[[1.0], [5.0]]])  # (1, 2, H_S=1) -> projected [1, 2], [5, 10]
    got = losses.hidden_mse(h_S, torch.zeros(1, 2, 2), torch.ones(1, 2), proj)
    assert got.item() == pytest.approx((1 + 4 + 25 + 100) / 4)
    with pytest.raises(ValueError, match="hidden sizes differ"):
        losses.hidden_mse(h_S, torch.zeros(1, 2, 2), torch.ones(1, 2))


def test_embedding_mse_is_hidden_mse():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert losses.embedding_mse(a, b, m).item() == pytest.approx(losses.hidden_mse(a, b, m).item())


def test_attention_kl_hand_value():
    a_T = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # (B=1, A=1, L=2, L=2)
    a_S = torch.tensor([[[[0.25, 0.75], [1.0, 0.0]]]])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.143841; row 1 is identical -> 0
    assert losses.attention_kl(a_S, a_T, torch.tensor([[1, 1]])).item() == pytest.approx(row0 / 2, abs=1e-6)
    assert losses.attention_kl(a_S, a_T, torch.tensor([[1, 0]])).item() == pytest.approx(row0, abs=1e-6)


def test_attention_kl_different_head_counts_averages_heads():
    a_T = torch.softmax(torch.randn(2, 4, 3, 3), -1)
    a_S = a_T[:, :2] * 0 + a_T.mean(1, keepdim=True)  # 2 heads, each the teacher's head average
    assert losses.attention_kl(a_S, a_T, torch.ones(2, 3)).item() == pytest.approx(0.0, abs=1e-6)


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (B=1, L=3, H=2), token 2 is padding
    assert losses.mean_pool(h, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_cosine_distance_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cos = 1 (same direction) and 0 (orthogonal)
    assert losses.cosine_distance(a, b).item() == pytest.approx(0.5)
