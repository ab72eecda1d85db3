"""The `ha` family's MDN-RNN over training sequences: torch's fused LSTM (one call, a reset step before each episode
start) computes exactly what stepping its LSTMCell one frame at a time computes, episode starts included."""

from __future__ import annotations

import torch

from wm_core.models.ha import VaeMdnRnn
from wm_core.spec import ActionSpec


def test_fused_sequence_equals_stepwise_with_episode_starts_inside() -> None:
    torch.manual_seed(0)
    spec = ActionSpec("discrete", 3, names=("a", "b", "c"))
    model = VaeMdnRnn(VaeMdnRnn.preset("tiny", hidden=16, z_dim=6), spec).train()
    B, T = 5, 12
    zs, act = torch.randn(B, T, 6), spec.encode(torch.randint(0, 3, (B, T)).numpy()).float()
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 4] = first[3, 4] = first[2, 9] = first[0, 11] = True  # starts inside, in several rows
    first[2, 1] = first[4, 5] = first[4, 6] = first[4, 10] = True  # at t=1, back to back, three in one row
    zs.requires_grad_(True)
    fused = model._m_sequence(zs, act, first)
    reference = model._m_stepwise(zs, act, first)
    assert fused.shape == (B, T, 16)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), model.rnn.weight_hh, retain_graph=True)
    (g_ref,) = torch.autograd.grad(reference.square().sum(), model.rnn.weight_hh)
    torch.testing.assert_close(g_fused, g_ref, atol=1e-4, rtol=1e-4)
    # a start really restarts: row 1 after t=4 does not depend on what came before
    (g_row,) = torch.autograd.grad(fused[1, 4:].sum(), zs)
    assert g_row[1, :4].abs().max() == 0 and g_row[1, 4:].abs().max() > 0


class StepwiseHa(VaeMdnRnn):
    """`ha` with the reference stepwise M, for comparing whole losses."""

    _m_sequence = VaeMdnRnn._m_stepwise


def test_fused_loss_equals_stepwise_loss() -> None:
    spec = ActionSpec("discrete", 2, names=("left", "right"))
    model = VaeMdnRnn(VaeMdnRnn.preset("tiny"), spec).train()
    reference = StepwiseHa(model.config, spec).train()
    reference.load_state_dict(model.state_dict())
    B, T = 4, 8
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = first[0, 3] = first[1, 1] = first[1, 6] = first[3, 7] = True
    g = torch.Generator().manual_seed(1)
    batch = {
        "obs": torch.randint(0, 255, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g),
        "act": spec.encode(torch.randint(0, 2, (B, T), generator=g).numpy()),
        "rew": torch.rand(B, T, generator=g),
        "is_first": first,
        "is_terminal": torch.roll(first, -1, 1),
    }
    losses = []
    for m in (model, reference):
        torch.manual_seed(0)  # the same frames for V
        losses.append(m.loss(batch))
    torch.testing.assert_close(losses[0][0], losses[1][0], atol=1e-5, rtol=1e-5)
    for key in ("mdn_nll", "reward_mse", "done_bce"):
        assert abs(losses[0][1][key] - losses[1][1][key]) < 1e-5, key
