import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from core.engine.callbacks import TimeBudget
from core.engine.schedule import BudgetFit, LinearSchedule


def _lrs(scheduler, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_the_linear_schedule_is_transformers_warm_up_and_decay():
    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    ours = _lrs(LambdaLR(optimizer(), LinearSchedule(3, 10)), 13)
    assert ours == pytest.approx(_lrs(get_linear_schedule_with_warmup(optimizer(), 3, 10), 13))
    assert ours[3] == 0.5 and ours[10:] == [0.0] * 3


def test_a_shortened_total_survives_the_schedulers_state():
    schedule, fresh = LinearSchedule(2, 100), LinearSchedule(2, 100)
    scheduler = LambdaLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), schedule)
    schedule.total_steps = 40
    LambdaLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), fresh).load_state_dict(
        scheduler.state_dict())
    assert fresh.total_steps == 40


def test_budget_fit_counts_the_steps_that_fit_at_the_pace_since_its_last_call():
    now = [0.0]
    fit = BudgetFit(TimeBudget(100, clock=lambda: now[0]), reserve=0.1)
    now[0] = 30.0  # start-up and the first steps: slow, not measured
    assert fit.steps_that_fit(10) is None
    now[0] = 35.0
    assert fit.steps_that_fit(20) == 20 + 110  # 0.5 s a step; 100 - 35 - 10 s reserve left
    now[0] = 55.0
    assert fit.steps_that_fit(30) == 30 + 17  # slower now: 2 s a step, 35 s left
    now[0] = 95.0
    assert fit.steps_that_fit(31) == 32  # past the reserve: end at the next step
