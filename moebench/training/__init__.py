"""RunSpec -> finished run directory: runner (skip/resume), trainer, evaluation, memory, inference, environment."""
