"""How runs are scheduled, locked and stored: the plan's runs skipped, resumed or trained (runner), in a pool of
worker processes or on Ray, one suite lock, run folders and their archive, progress, the side-by-side timing pass
and the finished-run bookkeeping. The training loop itself is moebench.training."""
