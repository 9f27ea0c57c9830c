"""More real formats into the same events: Claude Code transcripts and Codex rollouts written by the
real binaries (behind the gateway, a scripted upstream), OpenHands event streams and SWE-agent 1.x
trajectories in their documented shapes, and ATIF both ways: a Tether run exported and read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backtest.fixtures import write
from tests.conftest import script
from tests.gateway.serve import serving
from tests.gateway.test_external_agents import binary, codex
from tether.backtest.engine import backtest_run
from tether.backtest.importers import ImportError_, import_file, load_runs
from tether.gateway.core import Gateway, issue_token
from tether.ledger import Ledger
from tether.policy import parse_policy

FAILING = "sh -c 'exit 3'"


def test_a_real_claude_code_transcript_imports_with_its_tools_exit_codes_and_cost(ledger: Ledger, tmp_path: Path):
    binary("claude")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    turns = script(tmp_path / "t.json", [
        {"tool_calls": [{"name": "Bash", "arguments": {"command": "ls", "description": "list"}}],
         "usage": {"input_tokens": 1000, "output_tokens": 20}},
        {"tool_calls": [{"name": "Write", "arguments": {"file_path": str(work / "a.py"), "content": "x = 1\n"}}]},
        {"tool_calls": [{"name": "Bash", "arguments": {"command": FAILING, "description": "fail"}}]},
        {"content": "done"}])
    token, _ = issue_token(ledger, "alice", turns)
    with serving(Gateway(ledger)) as url:
        env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token, "HOME": str(home),
               "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        done = subprocess.run([str(binary("claude")), "-p", "do it", "--output-format", "json", "--allowedTools",
                               "Bash Write"], env=env, cwd=work, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    (transcript,) = (home / ".claude" / "projects").rglob("*.jsonl")
    (run,) = list(load_runs([home / ".claude" / "projects"]))
    assert run.source == "claude-code-jsonl" and run.agent.startswith("Claude Code 2.1")
    assert [(s.command, s.exit_code) for s in run.steps[:3]] == [("ls", 0), (f"create {work / 'a.py'}", 0),
                                                                 (FAILING, 3)]
    assert run.steps[0].input_tokens == 1000
    recorded = json.loads(done.stdout)["total_cost_usd"]
    assert run.total_cost_usd == pytest.approx(recorded, rel=1e-6)  # Claude Code's own total, spread
    events = [p for p, _ in run.events()]
    trees = [p.tree for p in events if p.type == "tool_result"]
    assert trees[0] != trees[1]  # the Write changed the tree
    assert backtest_run(parse_policy("[budget]\nmax_steps = 2\n", Path("p.toml")), run).stopped
    assert transcript.name == f"{run.instance_id}.jsonl"


def test_a_real_codex_rollout_imports_with_its_commands_patches_and_tokens(ledger: Ledger, tmp_path: Path):
    binary("codex")
    turns = script(tmp_path / "t.json", [
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo hi > hi.txt"}}]},
        {"tool_calls": [{"name": "exec_command", "arguments": {
            "cmd": "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: b.txt\n+b\n*** End Patch\nEOF"}}]},
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": FAILING}}]},
        {"content": "done"}])
    token, _ = issue_token(ledger, "bob", turns)
    home = tmp_path / "codex-home"
    home.mkdir()
    with serving(Gateway(ledger)) as url:
        done = codex(url, token, home, "do it", "--dangerously-bypass-approvals-and-sandbox")
    assert done.returncode == 0, done.stderr
    (run,) = list(load_runs([home / "sessions"]))
    assert run.source == "codex-rollout" and run.model == "gateway-model"
    assert [s.command.split("\n")[0] for s in run.steps] == ["echo hi > hi.txt", "apply_patch <<'EOF'", FAILING]
    assert [s.exit_code for s in run.steps] == [0, 0, 3]
    assert all(s.input_tokens > 0 for s in run.steps)
    results = [p for p, _ in run.events() if p.type == "tool_result"]
    assert results[0].tree != results[1].tree and results[2].ok is False


OPENHANDS = [
    {"id": 0, "timestamp": "2026-05-01T10:00:00", "source": "user", "action": "message",
     "args": {"content": "Fix the bug in calc.py"}, "message": "Fix the bug in calc.py"},
    {"id": 1, "timestamp": "2026-05-01T10:00:05", "source": "agent", "action": "run",
     "args": {"command": "python -m pytest -q", "thought": "run the tests"},
     "llm_metrics": {"accumulated_cost": 0.02, "accumulated_token_usage": {"model": "claude-sonnet-4-5",
                                                                           "prompt_tokens": 900}}},
    {"id": 2, "timestamp": "2026-05-01T10:00:07", "source": "agent", "observation": "run", "cause": 1,
     "content": "1 failed", "extras": {"command": "python -m pytest -q", "metadata": {"exit_code": 1}}},
    {"id": 3, "timestamp": "2026-05-01T10:00:12", "source": "agent", "action": "edit",
     "args": {"path": "/workspace/calc.py", "command": "str_replace", "old_str": "-", "new_str": "+"},
     "llm_metrics": {"accumulated_cost": 0.05}},
    {"id": 4, "timestamp": "2026-05-01T10:00:12", "source": "agent", "observation": "edit", "cause": 3,
     "content": "The file /workspace/calc.py has been edited.", "extras": {"path": "/workspace/calc.py"}},
    {"id": 5, "timestamp": "2026-05-01T10:00:20", "source": "agent", "action": "finish",
     "args": {"final_thought": "done"}, "llm_metrics": {"accumulated_cost": 0.06}},
]


def test_openhands_event_streams_alone_or_in_an_evaluation_record(tmp_path: Path):
    stream = write(tmp_path / "oh" / "calc-1.trajectory.json", OPENHANDS, gz=False)  # type: ignore[arg-type]
    run = import_file(stream)
    assert run.source == "openhands-events" and run.task == "Fix the bug in calc.py"
    assert [(s.command, s.exit_code, s.output) for s in run.steps] == [
        ("python -m pytest -q", 1, "1 failed"), ("edit /workspace/calc.py", None,
                                                 "The file /workspace/calc.py has been edited.")]
    assert [round(s.cost_usd, 4) for s in run.steps] == [0.02, 0.03]
    record = write(tmp_path / "eval" / "astropy-1.trajectory.json",
                   {"instance_id": "astropy-1", "history": OPENHANDS, "metrics": {"accumulated_cost": 0.06},
                    "test_result": {"report": {"resolved": True}}}, gz=False)
    (labelled,) = list(load_runs([record]))
    assert labelled.instance_id == "astropy-1" and labelled.resolved is True
    assert labelled.label_source.endswith("(its own record)") and labelled.model == "claude-sonnet-4-5"


def test_a_swe_agent_1x_trajectory_reads_like_the_classic_one(tmp_path: Path):
    data = {"trajectory": [
        {"action": "find_file calc.py", "observation": "Found 1 matches", "response": "Let me look.",
         "thought": "Let me look.", "execution_time": 0.2, "state": {"working_dir": "/repo"}, "messages": []},
        {"action": "str_replace_editor str_replace /repo/calc.py --old_str a --new_str b",
         "observation": "The file /repo/calc.py has been edited.", "response": "", "thought": "",
         "execution_time": 0.1, "state": {}, "messages": []},
        {"action": "submit", "observation": "diff --git a/calc.py", "response": "", "thought": "",
         "execution_time": 0.1, "state": {}, "messages": []}],
        "history": [{"role": "system", "content": "s" * 50, "message_type": "system_prompt"},
                    {"role": "user", "content": "fix calc", "message_type": "observation"},
                    {"role": "assistant", "content": "a", "message_type": "action"},
                    {"role": "assistant", "content": "b", "message_type": "action"},
                    {"role": "assistant", "content": "c", "message_type": "action"}],
        "info": {"swe_agent_version": "1.1.0", "exit_status": "submitted", "submission": "diff",
                 "model_stats": {"instance_cost": 0.3, "tokens_sent": 3000, "tokens_received": 90, "api_calls": 3}},
        "replay_config": "{}", "environment": "swe_main"}
    run = import_file(write(tmp_path / "run" / "calc__calc-1" / "calc__calc-1.traj", data, gz=False))
    assert run.instance_id == "calc__calc-1" and [s.command.split()[0] for s in run.steps] == [
        "find_file", "str_replace_editor", "submit"]
    assert sum(s.cost_usd for s in run.steps) == pytest.approx(0.3)
    trees = [p.tree for p, _ in run.events() if p.type == "tool_result"]
    assert trees[0] != trees[1]  # the editor's str_replace is an edit


def test_a_tether_run_exports_as_atif_and_reads_back_the_same(repo: Path, tmp_path: Path):
    turns = script(tmp_path / "t.json", [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}], "usage": {"input_tokens": 50,
                                                                                     "output_tokens": 5}},
        {"tool_calls": [{"name": "bash", "arguments": {"command": "curl example.com"}}]},
        {"tool_calls": [{"name": "submit", "arguments": {"summary": "done"}}]}])
    tether = [sys.executable, "-m", "tether"]
    (repo / "tether.toml").write_text('[commands]\ndeny = ["curl"]\n')
    ran = subprocess.run([*tether, "run", "look around", "--model", turns, "--json"], cwd=repo,
                         capture_output=True, text=True, timeout=120)
    run_id = json.loads(ran.stdout)["run_id"]
    exported = tmp_path / "out" / "run.atif.json"
    exported.parent.mkdir()
    done = subprocess.run([*tether, "export", run_id, "--format", "atif", "-o", str(exported)], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    document = json.loads(exported.read_text())
    assert document["schema_version"] == "ATIF-v1.4" and document["session_id"] == run_id
    sources = [step["source"] for step in document["steps"]]
    assert sources[0] == "user" and "system" in sources  # the task, and the guard's refusal of curl
    assert [s["step_id"] for s in document["steps"]] == list(range(1, len(sources) + 1))
    (back,) = list(load_runs([exported]))
    assert back.source == "atif" and [s.command for s in back.steps] == ["ls", "curl example.com",
                                                                        'submit {"summary": "done"}']
    assert back.steps[0].input_tokens == 50
    assert back.resolved is (json.loads(ran.stdout)["status"] == "succeeded")
    wrong = subprocess.run([*tether, "export", run_id, "--format", "xml"], cwd=repo, capture_output=True, text=True)
    assert wrong.returncode == 2 and "atif" in wrong.stderr


def test_broken_session_files_name_the_file_and_line(tmp_path: Path):
    broken = tmp_path / "s.jsonl"
    broken.write_text('{"type": "session_meta", "payload": {}}\n{not json\n')
    with pytest.raises(ImportError_, match=r"s\.jsonl:2: not a JSON line"):
        import_file(broken)
    other = tmp_path / "o.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(ImportError_, match="neither a Claude Code transcript nor a Codex rollout"):
        import_file(other)
