"""PPO's loss terms, the reward normaliser and the human-demo schedule, against numbers computed by hand."""

import math

import pytest
import torch

from core.engine import ppo


def test_sequence_and_token_log_ratio_ignore_masked_positions():
    new = torch.tensor([[-1.0, -2.0, 5.0], [-0.5, -0.5, -0.5]])
    old = torch.tensor([[-1.5, -2.0, 0.0], [-0.5, -0.5, -1.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(ppo.log_ratio(new, old, mask, "sequence"), torch.tensor([0.5, 1.0]))
    assert torch.allclose(ppo.log_ratio(new, old, mask, "token"), torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="ratio level"):
        ppo.log_ratio(new, old, mask, "word")


def test_clipped_surrogate_clips_both_sides():
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7], requires_grad=True)
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss = ppo.clipped_surrogate(ratio, advantages, epsilon=0.2)
    # -min(rA, clip(r)A): -1.2 (clipped above), -0.5, +1.1, +0.8 (clipped below) -> mean 0.05
    assert loss.item() == pytest.approx(0.05)
    loss.backward()
    # Clipped terms pass no gradient; the others pass -A/4.
    assert torch.allclose(ratio.grad, torch.tensor([0.0, -0.25, 0.25, 0.0]))
    assert ppo.clip_fraction(ratio.detach(), 0.2).item() == pytest.approx(0.75)


def test_token_level_surrogate_broadcasts_advantage_and_masks():
    ratio = torch.tensor([[1.5, 1.0], [0.9, 3.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = ppo.clipped_surrogate(ratio, torch.tensor([1.0, -1.0]), 0.2, mask)
    # row 0 (A=1): -1.2, -1.0; row 1 (A=-1): +0.9; the masked 3.0 is ignored -> (-1.2 - 1.0 + 0.9) / 3
    assert loss.item() == pytest.approx((-1.2 - 1.0 + 0.9) / 3)


def test_kl_estimators_by_hand_and_zero_at_reference():
    logp = torch.tensor([[-1.0, -2.0, -7.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert ppo.kl_to_reference(logp, ref, mask, "k1").item() == pytest.approx(0.5 - 1.0)
    k3 = (math.exp(-0.5) - 1 + 0.5) + (math.exp(1.0) - 1 - 1.0)
    assert ppo.kl_to_reference(logp, ref, mask, "k3").item() == pytest.approx(k3)
    for estimator in ("k1", "k3"):
        assert ppo.kl_to_reference(logp, logp.clone(), mask, estimator).item() == 0.0


def test_ppo_loss_at_start_and_textgail_without_kl():
    torch.manual_seed(0)
    old = -torch.rand(3, 4)
    mask = torch.ones(3, 4)
    advantages = torch.tensor([1.0, -2.0, 0.5])
    out = ppo.ppo_loss(old.clone(), old, old, mask, advantages, kl_coef=0.1)
    # Policy == old == reference: ratio 1, nothing clipped, no KL, loss = -mean(A).
    assert out.policy_loss.item() == pytest.approx(-advantages.mean().item())
    assert out.kl.item() == 0.0 and out.clip_fraction.item() == 0.0 and out.approx_kl.item() == 0.0
    new = old + 0.05 * torch.randn(3, 4)
    ref = old - 0.1
    with_kl = ppo.ppo_loss(new, old, ref, mask, advantages, kl_coef=0.5)
    without = ppo.ppo_loss(new, old, ref, mask, advantages, kl_coef=0.0)
    assert without.loss.item() == without.policy_loss.item()  # TextGAIL's loss
    assert with_kl.loss.item() == pytest.approx(without.policy_loss.item() + 0.5 * with_kl.kl.item())
    assert with_kl.kl.item() > 0


def test_approx_kl_by_hand():
    log_r = torch.tensor([0.1, -0.2])
    expected = ((math.exp(0.1) - 1 - 0.1) + (math.exp(-0.2) - 1 + 0.2)) / 2
    assert ppo.approx_kl(log_r).item() == pytest.approx(expected)


def test_running_mean_std_momentum_and_clip():
    norm = ppo.RunningMeanStd(momentum=0.9)
    first = norm.normalize(torch.tensor([1.0, 2.0, 3.0]), clip=2.0)
    assert norm.mean == pytest.approx(2.0) and norm.var == pytest.approx(2 / 3)
    assert torch.allclose(first, torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3), atol=1e-6)
    batch = torch.tensor([4.0, 20.0, -10.0])
    second = norm.normalize(batch, clip=2.0)
    batch_mean = 14 / 3
    batch_var = sum((x - batch_mean) ** 2 for x in (4.0, 20.0, -10.0)) / 3
    assert norm.mean == pytest.approx(0.9 * 2 + 0.1 * batch_mean)
    assert norm.var == pytest.approx(0.9 * 2 / 3 + 0.1 * batch_var)
    scale = math.sqrt(norm.var)
    expected = torch.tensor([(4 - norm.mean) / scale, 2.0, -2.0])  # 20 and -10 are clipped to +-2
    assert torch.allclose(second, expected, atol=1e-6)
    restored = ppo.RunningMeanStd()
    restored.load_state_dict(norm.state_dict())
    assert torch.equal(restored.normalize(torch.tensor([1.0]), update=False),
                       norm.normalize(torch.tensor([1.0]), update=False))


def test_demo_ratio_is_held_during_warmup_then_decays_linearly_to_zero():
    total, warmup = 1000, 100
    held = [ppo.demo_ratio(s, total, 0.3, warmup) for s in range(warmup + 1)]
    assert held == [0.3] * (warmup + 1)
    assert ppo.demo_ratio(101, total, 0.3, warmup) < 0.3
    assert ppo.demo_ratio(550, total, 0.3, warmup) == pytest.approx(0.15)
    assert ppo.demo_ratio(total, total, 0.3, warmup) == 0.0
    assert ppo.demo_ratio(total + 50, total, 0.3, warmup) == 0.0
    # Without a warm-up the decay starts at once.
    assert ppo.demo_ratio(500, total, 0.3, 0) == pytest.approx(0.15)
    assert [ppo.demo_count(16, r) for r in (0.3, 0.15, 0.0)] == [4, 2, 0]


def test_without_length_trend_removes_the_linear_length_signal_and_keeps_the_rest():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 30, (256,), generator=generator)
    quality = torch.randn(256, generator=generator)
    rewards = 1.0 - 0.05 * lengths + quality  # shorter pays
    out = ppo.without_length_trend(rewards, lengths)
    centred = lengths.float() - lengths.float().mean()
    assert abs(float((centred * (out - out.mean())).sum())) < 1e-3  # no linear length trend left
    assert torch.isclose(out.mean(), rewards.mean(), atol=1e-5)
    assert torch.corrcoef(torch.stack([out, quality]))[0, 1] > 0.99  # what does not depend on length stays
    same = torch.full((4,), 7)
    assert torch.equal(ppo.without_length_trend(rewards[:4], same), rewards[:4])  # no spread in length: unchanged
