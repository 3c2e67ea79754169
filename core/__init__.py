"""EmpathyGAIL core: data, models, the GAIL/PPO engine, baselines and scoring. No UI code lives here."""

import os

# Before torch starts OpenMP: an idle thread spins only briefly before it sleeps (GNU and Intel OpenMP). Replies are
# written on the model thread (core.models.model_thread) while other threads load and read emotions; with the
# default long spins their thread teams fight over the cores and a reply takes several times as long (README,
# Serving). Sleeping at once instead (OMP_WAIT_POLICY=PASSIVE) costs every reply a quarter of its time.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
os.environ.setdefault("KMP_BLOCKTIME", "1")

__version__ = "0.1.0"
