"""The training loop of one run: trainer, evaluation, memory and peaks, measured FLOPs, inference timing, trackers
and the environment record. Scheduling, locking and storing runs is moebench.runs."""
