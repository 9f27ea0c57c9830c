"""Run or resume a scripted run in a process that SIGKILLs itself right after its Nth event append.

    python tests/crash_driver.py DB_URL KILL_AFTER start REPO POLICY_TOML MODEL
    python tests/crash_driver.py DB_URL KILL_AFTER resume RUN_ID
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.remove(str(Path(__file__).parent))  # tests/queue would stand in for the standard library's queue

from tether.ledger import Ledger
from tether.ledger.store import Ledger as LedgerClass
from tether.policy import load_policy
from tether.runner import RunSpec, resume_run, start_run

url, kill_after, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
original_append = LedgerClass.append
appended = 0


def append_then_maybe_die(self, run_id, type_, payload):
    global appended
    event = original_append(self, run_id, type_, payload)
    appended += 1
    if appended == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return event


LedgerClass.append = append_then_maybe_die
ledger = Ledger(url)
if mode == "start":
    repo, policy_file, model = Path(sys.argv[4]), Path(sys.argv[5]), sys.argv[6]
    start_run(ledger, RunSpec("crash test", repo, load_policy(policy_file), model=model))
else:
    resume_run(ledger, sys.argv[4])
