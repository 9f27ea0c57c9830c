"""`tether report` on a history built here with known outcomes: a change merged by a merge commit, one
squashed, one rebased, one reverted, one fixed by someone else, one whose file was deleted, one whose
file was renamed; and on the real sqlite-utils history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIX, call, run_scripted
from tether.history.refresh import refresh
from tether.history.report import build
from tether.ledger import Ledger

TETHER = [sys.executable, "-m", "tether"]
DAY = 86400
TRAILER = "\n\nCo-Authored-By: Claude <noreply@anthropic.com>"


class Repo:
    def __init__(self, path: Path, start: float):
        self.path, self.clock = path, start
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, who: str = "dev", when: float | None = None) -> str:
        stamp = f"@{int(when if when is not None else self.clock)} +0000"
        env = {**os.environ, "GIT_AUTHOR_NAME": who, "GIT_AUTHOR_EMAIL": f"{who}@example.com",
               "GIT_COMMITTER_NAME": who, "GIT_COMMITTER_EMAIL": f"{who}@example.com",
               "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True).stdout

    def write(self, name: str, lines: list[str]) -> None:
        (self.path / name).write_text("".join(f"{line}\n" for line in lines))

    def commit(self, message: str, who: str = "dev", days: float = 1) -> str:
        self.clock += days * DAY
        self.git("add", "-A")
        self.git("commit", "-qm", message, who=who)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def history(tmp_path: Path) -> tuple[Repo, dict[str, str]]:
    repo = Repo(tmp_path / "repo", time.time() - 200 * DAY)
    for name, lines in (("a.py", 10), ("b.py", 10), ("c.py", 3), ("d.py", 3)):
        repo.write(name, [f"{name} {i}" for i in range(lines)])
    repo.commit("base")
    made: dict[str, str] = {}
    # 1: merged by a merge commit; all 4 lines survive
    repo.git("checkout", "-q", "-b", "one")
    repo.write("a.py", [f"a.py {i}" for i in range(10)] + [f"agent a {i}" for i in range(4)])
    made["merged"] = repo.commit("add a" + TRAILER, who="alice")
    repo.git("checkout", "-q", "main")
    repo.clock += DAY
    repo.git("merge", "-q", "--no-ff", "-m", "merge one", "one", who="maintainer")
    # 2: reverted
    repo.write("b.py", [f"b.py {i}" for i in range(10)] + ["agent b 0", "agent b 1"])
    made["reverted"] = repo.commit("add b" + TRAILER, who="alice")
    repo.clock += DAY
    repo.git("revert", "--no-edit", made["reverted"], who="maintainer")
    # 3: fixed by someone else within the window: 2 of its 5 lines rewritten
    repo.write("b.py", [f"b.py {i}" for i in range(10)] + [f"agent fix {i}" for i in range(5)])
    made["fixed"] = repo.commit("add fix" + TRAILER, who="alice")
    repo.write("b.py", [f"b.py {i}" for i in range(10)] + ["agent fix 0", "bob 1", "bob 2", "agent fix 3",
                                                           "agent fix 4"])
    made["follow_up"] = repo.commit("fix the fix", who="bob", days=3)
    # 4: its file deleted later: nothing survives
    repo.write("c.py", [f"c.py {i}" for i in range(3)] + ["agent c"])
    made["deleted"] = repo.commit("add c" + TRAILER, who="alice")
    (repo.path / "c.py").unlink()
    repo.commit("drop c", who="bob")
    # 5: its file renamed later: the lines survive under the new name
    repo.write("d.py", [f"d.py {i}" for i in range(3)] + ["agent d 0", "agent d 1", "agent d 2"])
    made["renamed"] = repo.commit("add d" + TRAILER, who="alice")
    repo.git("mv", "d.py", "e.py")
    repo.commit("rename d", who="bob")
    (repo.path / "x.py").write_text("x\n")
    repo.commit("later", who="bob", days=60)
    return repo, made


def outcomes(report) -> dict[str, dict]:
    return {row.outcome.commit: row.outcome.as_dict() for row in report.rows}


def test_attributed_changes_are_followed_to_their_real_outcomes(history):
    repo, made = history
    report = build(None, repo.path, None, 30, attribute="Co-Authored-By: Claude")
    found = outcomes(report)
    assert set(found) == {made[k] for k in ("merged", "reverted", "fixed", "deleted", "renamed")}
    merged = found[made["merged"]]
    assert merged["merged"] and merged["how"] == "ancestry" and merged["hours_to_merge"] == 24.0
    assert (merged["added"], merged["surviving"], merged["reverted_by"]) == (4, 4, None)
    reverted = found[made["reverted"]]
    assert reverted["reverted_by"] and reverted["surviving"] == 0 and reverted["added"] == 2
    fixed = found[made["fixed"]]
    assert (fixed["added"], fixed["surviving"], fixed["rewritten_by_others"]) == (5, 3, 2)
    assert fixed["follow_ups"] == [made["follow_up"]]
    assert found[made["deleted"]]["surviving"] == 0 and found[made["deleted"]]["added"] == 1
    renamed = found[made["renamed"]]
    assert (renamed["added"], renamed["surviving"]) == (3, 3)
    group = report.groups()["attributed (outside Tether)"]
    # reworked by others within 30 days: the fix bob fixed, and c.py, which bob deleted (a revert is a revert)
    assert (group["changes"], group["merged"], group["reverted"], group["reworked"]) == (5, 5, 1, 2)
    assert (group["lines_added"], group["lines_surviving"]) == (15, 10)


def test_tether_runs_merged_by_squash_and_by_rebase_are_found_by_patch_id(ledger: Ledger, repo: Path, tmp_path: Path):
    fix = call("write_file", path="raindrops.py", content=FIX)
    squashed = run_scripted(ledger, repo, tmp_path, [fix, call("submit", summary="s")])
    rebased = run_scripted(ledger, repo, tmp_path, [call("write_file", path="NOTES.md", content="n\n"),
                                                    call("submit", summary="s")])
    unmerged = run_scripted(ledger, repo, tmp_path, [call("write_file", path="OTHER.md", content="o\n"),
                                                     call("submit", summary="s")])
    env = {**os.environ, "GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@e", "GIT_COMMITTER_NAME": "m",
           "GIT_COMMITTER_EMAIL": "m@e"}

    def on_main(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    on_main("merge", "--squash", squashed["branch"])
    on_main("commit", "-qm", "squashed fix")
    on_main("cherry-pick", rebased["branch"])
    report = build(ledger, repo, None, 30)
    by_run = {row.outcome.run_id: row.outcome for row in report.rows}
    assert by_run[squashed["run_id"]].merged and by_run[squashed["run_id"]].how == "patch-id"
    assert by_run[rebased["run_id"]].merged and by_run[rebased["run_id"]].how == "patch-id"
    assert not by_run[unmerged["run_id"]].merged
    assert by_run[squashed["run_id"]].added == 2 and by_run[squashed["run_id"]].surviving == 2  # the body
    recorded = [sum(r.recorded for r in refresh(ledger, repo, 30, by="tether report", report=report).runs)
                for _ in range(2)]
    assert recorded == [2, 0]  # once, then unchanged
    reported = [e.payload for e in ledger.events(squashed["run_id"]) if e.type == "outcome_reported"]
    assert reported == [{"outcome": "merged", "by": "tether report", "reason": reported[0]["reason"]}]


def test_the_command_line_writes_json_and_html_and_refuses_bad_input(history, tmp_path: Path):
    repo, made = history
    page = tmp_path / "report.html"
    done = subprocess.run([*TETHER, "report", "--attribute", "Co-Authored-By: Claude", "--json", "--html", str(page),
                           "--db", f"sqlite:///{tmp_path / 's.db'}"], cwd=repo.path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["groups"]["attributed (outside Tether)"]["changes"] == 5
    assert "<svg" in page.read_text() and made["fixed"][:10] in page.read_text()
    for args, message in ((["--attribute", "("], "not a pattern"), (["--since", "soon"], "--since"),
                          (["--days", "0"], "--days")):
        bad = subprocess.run([*TETHER, "report", *args, "--db", f"sqlite:///{tmp_path / 's.db'}"], cwd=repo.path,
                             capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr


SQLITE_UTILS = Path(__file__).parents[3] / "shared" / "data" / "repos" / "sqlite-utils.bundle"


@pytest.mark.slow
def test_the_real_sqlite_utils_history(tmp_path: Path):
    repo = tmp_path / "sqlite-utils"
    subprocess.run(["git", "clone", "-q", str(SQLITE_UTILS), str(repo)], check=True)
    report = build(None, repo, None, 30, attribute=r"Co-Authored-By: Claude|Generated with \[?Claude Code",
                   now=1786000000.0)
    group = report.groups()["attributed (outside Tether)"]
    assert group["changes"] >= 70 and group["merged"] == group["changes"]
    assert 0.5 < group["survival"] < 1 and group["reverted"] == 0
