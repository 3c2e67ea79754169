"""EmpathyGAIL core: data, models, the GAIL/PPO engine, baselines and scoring. No UI code lives here."""

import os

# Before torch starts OpenMP: threads that wait for work sleep instead of spinning. Replies are written on worker
# threads (core.models.streaming) while other threads load, score and read emotions; with spinning waiters their
# thread teams fight over the cores and a reply takes several times as long (README, Serving).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
