"""PPO's loss terms as pure functions (CleanRL style), the reward normaliser and the human-demo schedule.

Shapes: token log-probabilities are [batch, length] with a 0/1 `mask` on the response tokens; sequence-level
quantities are [batch]. There is no value function (as in TextGAIL): a reply's advantage is its normalised,
clipped reward, the same for each of its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def log_ratio(new_logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
              level: str = "sequence") -> torch.Tensor:
    """log(pi_new / pi_old): per reply ([batch], the sum over its tokens; TextGAIL's choice) or per token."""
    diff = (new_logp - old_logp) * mask
    if level == "sequence":
        return diff.sum(-1)
    if level == "token":
        return diff
    raise ValueError(f"ratio level {level!r}; expected sequence or token")


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float = 0.2,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """-min(r A, clip(r, 1 - eps, 1 + eps) A), averaged (over `mask` for token-level ratios)."""
    if advantages.dim() < ratio.dim():
        advantages = advantages.unsqueeze(-1).expand_as(ratio)
    loss = -torch.min(ratio * advantages, ratio.clamp(1 - epsilon, 1 + epsilon) * advantages)
    return loss.mean() if mask is None else masked_mean(loss, mask)


def kl_to_reference(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                    estimator: str = "k3") -> torch.Tensor:
    """Per-reply KL(pi || pi_ref) summed over the reply's sampled tokens ([batch]); exactly 0 when logp == ref_logp.

    k1 = log pi - log pi_ref (unbiased, can be negative per sample); k3 = (r - 1) - log r with r = pi_ref / pi
    (unbiased, never negative, lower variance; Schulman's estimators, as TRL uses them).
    """
    log_r = (ref_logp - logp) * mask
    if estimator == "k1":
        per_token = -log_r
    elif estimator == "k3":
        per_token = torch.expm1(log_r) - log_r
    else:
        raise ValueError(f"KL estimator {estimator!r}; expected k1 or k3")
    return (per_token * mask).sum(-1)


def clip_fraction(ratio: torch.Tensor, epsilon: float = 0.2, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of ratios outside [1 - eps, 1 + eps], where the clipped objective stops the gradient."""
    clipped = ((ratio - 1).abs() > epsilon).float()
    return clipped.mean() if mask is None else masked_mean(clipped, mask)


def approx_kl(log_r: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(pi_old || pi_new) from log(pi_new / pi_old) with the k3 estimator (CleanRL's `approx_kl`)."""
    values = torch.expm1(log_r) - log_r
    return values.mean() if mask is None else masked_mean(values, mask)


@dataclass
class PPOLoss:
    loss: torch.Tensor  # policy loss + kl_coef * KL: what is minimised
    policy_loss: torch.Tensor
    kl: torch.Tensor  # mean per-reply KL to the reference
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def ppo_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
             advantages: torch.Tensor, epsilon: float = 0.2, kl_coef: float = 0.0, level: str = "sequence",
             kl_estimator: str = "k3") -> PPOLoss:
    """Equation 7: the clipped surrogate plus kl_coef times the KL to a frozen reference (0: TextGAIL's loss)."""
    log_r = log_ratio(new_logp, old_logp, mask, level)
    ratio = torch.exp(log_r)
    token_mask = mask if level == "token" else None
    policy_loss = clipped_surrogate(ratio, advantages, epsilon, token_mask)
    kl = kl_to_reference(new_logp, ref_logp, mask, kl_estimator).mean()
    with torch.no_grad():
        fraction = clip_fraction(ratio, epsilon, token_mask)
        old_new_kl = approx_kl(log_r, token_mask)
    return PPOLoss(loss=policy_loss + kl_coef * kl, policy_loss=policy_loss, kl=kl, clip_fraction=fraction,
                   approx_kl=old_new_kl)


class RunningMeanStd:
    """Exponential moving mean and variance of rewards (TextGAIL: momentum 0.9), for normalising them.

    The first batch sets the statistics; each later batch moves them: mean <- m mean + (1 - m) batch_mean,
    var <- m var + (1 - m) batch_var. `normalize` updates first, so a batch is scaled with its own statistics in.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-8):
        self.momentum, self.epsilon = momentum, epsilon
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double().flatten()
        batch_mean = values.mean().item()
        batch_var = values.var(unbiased=False).item() if values.numel() > 1 else 0.0
        if self.count == 0:
            self.mean, self.var = batch_mean, batch_var
        else:
            m = self.momentum
            self.mean = m * self.mean + (1 - m) * batch_mean
            self.var = m * self.var + (1 - m) * batch_var
        self.count += values.numel()

    def normalize(self, values: torch.Tensor, clip: float | None = 2.0, update: bool = True) -> torch.Tensor:
        if update:
            self.update(values)
        scaled = (values - self.mean) / (self.var + self.epsilon) ** 0.5
        return scaled if clip is None else scaled.clamp(-clip, clip)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])


def without_length_trend(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Rewards minus their least-squares linear trend in reply length, the mean kept: a discriminator that finds
    short generated replies safer (fewer tokens to give a small generator away) cannot pay for brevity alone."""
    x = lengths.float() - lengths.float().mean()
    variance = (x * x).sum()
    if len(rewards) < 2 or variance == 0:
        return rewards
    slope = (x * (rewards - rewards.mean())).sum() / variance
    return rewards - slope * x


def demo_ratio(step: int, total_steps: int, start: float = 0.3, warmup_steps: int = 100) -> float:
    """Share of human demonstrations in each sample batch at GAIL update `step` (0-based).

    Warm-up here means the ratio is held at `start` for the first `warmup_steps` updates, while the discriminator
    and the generator settle; it then decays linearly to 0, reached at the last update (`total_steps`).
    TextGAIL reads such a setting but never uses it; this one is used and tested.
    """
    if step < warmup_steps:
        return start
    decay = max(total_steps - warmup_steps, 1)
    return max(0.0, start * (1 - (step - warmup_steps) / decay))


def demo_count(batch_size: int, ratio: float) -> int:
    """How many of a sample batch's items are demonstrations: int(batch x ratio), as TextGAIL does."""
    return int(batch_size * ratio + 1e-9)
