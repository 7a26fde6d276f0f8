"""Trained models evaluated outside the trainer: lm-evaluation-harness bridge and tasks, loading a run."""
