"""`moebench run` under torchrun with rank FAIL_RANK raising in training step FAIL_STEP, or hanging there when
FAIL_MODE=hang (the test's fault injection; nothing in moebench knows about it)."""
import os
import sys
import time

from moebench.training import trainer as train
from moebench.cli import main

FAIL_RANK, FAIL_STEP = int(os.environ["FAIL_RANK"]), int(os.environ["FAIL_STEP"])
_step = train.Trainer.train_step


def failing_step(self):
    if int(os.environ["RANK"]) == FAIL_RANK and self.step == FAIL_STEP:
        if os.environ.get("FAIL_MODE") == "hang":
            time.sleep(3600)
        raise RuntimeError(f"injected failure on rank {FAIL_RANK}")
    return _step(self)


train.Trainer.train_step = failing_step
sys.exit(main(sys.argv[1:]))
