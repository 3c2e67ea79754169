"""The MLE trainers' learning-rate schedule: linear warm-up, then linear decay to zero, which a time budget may
shorten so that a run ended by its budget still ends with its learning rate at zero.

A run capped by `max_seconds` (every stage of the GPU recipe) would otherwise stop wherever the budget falls, with
the learning rate still high, and a linear schedule cut at 70% leaves its model short of what the same steps give
with the decay finished.
"""

from __future__ import annotations

from core.engine.callbacks import TimeBudget


class LinearSchedule:
    """The multiplier of `transformers.get_linear_schedule_with_warmup`, for `torch.optim.lr_scheduler.LambdaLR`,
    as an object whose `total_steps` may change mid-run: LambdaLR saves a callable object's attributes in its state,
    so a resumed run keeps a shortened total."""

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))


class BudgetFit:
    """How many steps fit in what is left of a time budget, from the pace of the steps since the last call.

    The first call only starts the clock: the steps before it carry start-up costs (CUDA kernels, the allocator's
    first blocks) that would make the pace look slower than it is, and a schedule is never lengthened again.
    `reserve` (a fraction of the whole budget) is kept for the final evaluation, checkpoint and export.
    """

    def __init__(self, budget: TimeBudget, reserve: float = 0.1):
        self.budget, self.reserve = budget, reserve
        self._since: tuple[int, float] | None = None

    def steps_that_fit(self, step: int) -> int | None:
        """The last step that ends within the budget at the measured pace; None on the first call."""
        now = self.budget.clock()
        since, self._since = self._since, (step, now)
        if since is None or step <= since[0]:
            return None
        seconds_per_step = (now - since[1]) / (step - since[0])
        spare = self.budget.deadline - now - self.reserve * self.budget.seconds
        return step + max(1, int(spare / max(seconds_per_step, 1e-9)))
