"""A small local model behind an external agent: asked as Tether's own agent would ask it, its
actions put into the agent's own tools. The translation is checked with real files and bash; the
slow tests run the real Claude Code and Codex with Qwen2.5-Coder-1.5B behind the run's gateway,
and whatever the model achieves, the run must end cleanly within its budget."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, payloads
from tests.gateway.test_external_agents import binary
from tests.models.test_local_model import CAPABLE, STUB, TASK, present
from tether.gateway.dialect import as_tether_request, to_agent_calls
from tether.gateway.wire import Request
from tether.ledger import Ledger
from tether.models import ModelResponse, ToolCall, ToolSpec
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

ACTIONS = [ToolCall("c0", "write_file", {"path": "dir/a b.py", "content": "x = 'it''s'\nEOF\n"}),
           ToolCall("c1", "edit_file", {"path": "dir/a b.py", "old": "x = ", "new": "y = "}),
           ToolCall("c2", "bash", {"command": "cat 'dir/a b.py'"}),
           ToolCall("c3", "submit", {"summary": "done"})]


def request(*tools: str) -> Request:
    return Request(model="m", messages=[{"role": "system", "content": "a very long agent prompt"},
                                        {"role": "user", "content": "the task"}],
                   tools=[ToolSpec(name, "", {}) for name in tools], max_tokens=100, stream=False, wire="chat")


def test_the_model_is_asked_with_tethers_prompt_and_tools_and_the_agents_conversation():
    messages, tools = as_tether_request(request("Bash", "Write"))
    assert "a very long agent prompt" not in json.dumps(messages)
    assert messages[1] == {"role": "user", "content": "the task"}
    assert {tool.name for tool in tools} == {"bash", "read_file", "write_file", "edit_file", "submit"}


def test_actions_become_claude_codes_tools_with_absolute_paths(tmp_path: Path):
    reply = to_agent_calls(ModelResponse("text", ACTIONS), request("Bash", "Write", "Edit", "Read"), tmp_path)
    assert [(c.name, c.arguments.get("file_path")) for c in reply.tool_calls] == [
        ("Write", str(tmp_path / "dir/a b.py")), ("Edit", str(tmp_path / "dir/a b.py")), ("Bash", None)]
    assert reply.content == "text"  # submit is the reply's text alone: the agent's turn ends


def test_actions_become_codex_shell_commands_that_do_the_same(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    reply = to_agent_calls(ModelResponse("", ACTIONS), request("exec_command", "write_stdin"), tmp_path)
    assert [c.name for c in reply.tool_calls] == ["exec_command"] * 3
    outputs = [subprocess.run(["bash", "-c", c.arguments["cmd"]], cwd=tmp_path, capture_output=True, text=True)
               for c in reply.tool_calls]
    assert [o.returncode for o in outputs] == [0, 0, 0], [o.stderr for o in outputs]
    assert outputs[2].stdout == "y = 'it''s'\nEOF\n"  # the heredoc kept the content whole


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["claude-code", "codex"])
def test_an_external_agent_with_the_local_1_5b_ends_cleanly_within_its_budget(agent: str, tmp_path: Path):
    binary("claude" if agent == "claude-code" else "codex")
    present(CAPABLE)
    repo = tmp_path / "hello"
    repo.mkdir()
    (repo / "hello_world.py").write_text(STUB)
    (repo / "hello_world_test.py").write_text(
        "from hello_world import hello\n\n\ndef test_say_hi():\n    assert hello() == 'Hello, World!'\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "hello")
    policy = parse_policy('[budget]\nmax_steps = 4\nmax_wall_s = 600\n[[checks]]\nname = "tests"\n'
                          'command = "python -m pytest -q -p no:cacheprovider hello_world_test.py"\n', Path("t.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    summary = start_run(ledger, RunSpec(TASK, repo, policy, model="local:qwen2.5-coder-1.5b", agent=agent))
    assert summary["status"] in ("succeeded", "failed", "stopped"), summary
    assert summary["usage"]["steps"] <= 4 and summary["usage"]["usd"] == 0
    responses = payloads(ledger, summary["run_id"], "model_response")
    assert responses and all(r["usage"]["input_tokens"] < 4096 for r in responses)  # Tether's prompt, not the agent's
    own_tools = {"claude-code": {"Bash", "Write", "Edit", "Read"}, "codex": {"Bash", "apply_patch"}}[agent]
    assert {c["name"] for c in payloads(ledger, summary["run_id"], "tool_call")} <= own_tools
    assert ledger.verify(summary["run_id"]).ok
