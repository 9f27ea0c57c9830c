"""Delivery time per run against a plain `git push` of the same branch to the same server.

    .venv/bin/python benchmarks/bench_delivery.py [--runs 20]

A real run of the scripted model on the raindrops sample, then, to a `git http-backend` on loopback
(with a token, as the forges ask) and the tests' forge server speaking GitHub's REST shapes:
`git push` of the run's branch by hand (the baseline), `deliver` in push mode (the same push plus
reading the run, resolving the remote, recording the event) and in pull_request mode (plus
finding, opening and labelling the request, asking reviewers, recording). Each round makes three
runs, one for each, so every push sends a commit the server has not seen. Figures: median
seconds, and each as a ratio to the baseline."""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' servers

from sample_repo import sample_repo

from tests.delivery.servers import TOKEN, Forge, bare_repo, forge_server, git_http_server
from tether.delivery.deliver import deliver
from tether.ledger import Ledger
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run
from tether.workspace.git import git

FIX = ("def convert(number):\n    sounds = ((3, 'Pling'), (5, 'Plang'), (7, 'Plong'))\n"
       "    return ''.join(s for d, s in sounds if number % d == 0) or str(number)\n")
TURNS = ('[{"tool_calls": [{"name": "write_file", "arguments": {"path": "raindrops.py", "content": %s}}]},'
         ' {"tool_calls": [{"name": "submit", "arguments": {"summary": "done"}}]}]')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = sample_repo(root)
        forge_root = root / "forge"
        forge_root.mkdir()
        bare_repo(forge_root, "shop", repo)
        forge = Forge("github", forge_root)
        os.environ["BENCH_FORGE_TOKEN"] = TOKEN
        turns = root / "turns.json"
        turns.write_text(TURNS % json.dumps(FIX))
        ledger = Ledger(f"sqlite:///{root / 'bench.db'}")
        timings: dict[str, list[float]] = {"git push": [], "deliver (push)": [], "deliver (pull_request)": []}
        with git_http_server(forge_root) as git_url, forge_server(forge) as api:
            policy_text = (f'[delivery]\nremote = "{git_url}/shop.git"\nforge = "github"\napi_url = "{api}"\n'
                           f'repository = "acme/shop"\ntoken_env = "BENCH_FORGE_TOKEN"\n')
            policies = {mode: parse_policy(policy_text + f'mode = "{mode}"\n', Path("t.toml")).delivery
                        for mode in ("push", "pull_request")}
            basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
            auth = {"http.extraHeader": f"Authorization: Basic {basic}"}
            for index in range(args.runs):
                # three runs, so each push sends a commit the server has not seen
                runs = [start_run(ledger, RunSpec("Make the tests pass", repo, parse_policy("", Path("t.toml")),
                                                  model=f"scripted:{turns}")) for _ in range(3)]
                started = time.perf_counter()
                git(repo, "push", "-q", f"{git_url}/shop.git", f"{runs[0]['commit']}:refs/heads/plain/{index}",
                    config=auth)
                timings["git push"].append(time.perf_counter() - started)
                for summary, mode, label in ((runs[1], "push", "deliver (push)"),
                                             (runs[2], "pull_request", "deliver (pull_request)")):
                    started = time.perf_counter()
                    deliver(ledger, summary["run_id"], policies[mode])
                    timings[label].append(time.perf_counter() - started)
        ledger.close()
    baseline = statistics.median(timings["git push"])
    table = Table("delivery", "median s", "ratio to git push", title=f"{args.runs} runs, loopback git and forge")
    for label, values in timings.items():
        median = statistics.median(values)
        table.add_row(label, f"{median:.3f}", f"{median / baseline:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
