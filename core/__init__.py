"""EmpathyGAIL core: data, models, the GAIL/PPO engine, baselines and scoring. No UI code lives here."""

__version__ = "0.1.0"
