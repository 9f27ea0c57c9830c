"""Submit a list of keyed tasks from one process; print {key: task_id} as JSON (used by the tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tether.ledger import Ledger
from tether.queue.tasks import Tasks


def main() -> None:
    db_url, repo, model, keys_json = sys.argv[1:5]
    ledger = Ledger(db_url)
    tasks = Tasks(ledger)
    ids = {}
    for key in json.loads(keys_json):
        ids[key] = tasks.submit(f"no-op task {key}", Path(repo), key=key, model=model)[0]
    tasks.close()
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
