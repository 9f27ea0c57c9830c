"""Codex's tools as the guard sees them: its shell, its patches (read from the envelope, applied to the
file as it is), and the hook's answers in Codex's protocol, through a real gateway on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.gateway.serve import serving
from tether.gateway.agent_tools import HOOK_SCRIPT, codex_calls, codex_hooks
from tether.gateway.core import Gateway, issue_token
from tether.gateway.patches import PatchError, patch_in_command, read_patch
from tether.guard.decisions import Decision
from tether.ledger import Ledger
from tether.policy import parse_policy


def files(**texts: str):
    return lambda path: texts.get(path)


def test_a_patch_reads_as_the_whole_files_it_makes():
    patch = ("*** Begin Patch\n*** Add File: new.py\n+a = 1\n+\n+b = 2\n*** Update File: old.py\n@@ def f():\n"
             " def f():\n-    return 1\n+    return 2\n*** Delete File: gone.py\n*** End Patch\n")
    add, update, delete = read_patch(patch, files(**{"old.py": "x = 0\ndef f():\n    return 1\n"}))
    assert (add.op, add.path, add.content) == ("add", "new.py", "a = 1\n\nb = 2\n")
    assert (update.op, update.content) == ("update", "x = 0\ndef f():\n    return 2\n")
    assert (delete.op, delete.path, delete.content) == ("delete", "gone.py", None)


def test_an_update_that_does_not_apply_keeps_its_hunks_and_a_move_names_both_paths():
    patch = "*** Begin Patch\n*** Update File: a.py\n*** Move to: b.py\n@@\n-missing\n+new\n*** End Patch"
    (change,) = read_patch(patch, files(**{"a.py": "other\n"}))
    assert change.content is None and change.move_to == "b.py" and change.hunks == (("missing\n", "new\n"),)


@pytest.mark.parametrize("patch, where", [
    ("*** Add File: a\n+x\n*** End Patch", "starts with"),
    ("*** Begin Patch\n*** Add File: a\n+x\n", "ends with"),
    ("*** Begin Patch\nrm -rf /\n*** End Patch", "line 2"),
    ("*** Begin Patch\n*** Add File: a\nx\n*** End Patch", "a: every line"),
    ("*** Begin Patch\n*** Update File: a\n*** End Patch", "a: an update with no hunk"),
    ("*** Begin Patch\n*** Update File: a\n@@\n?x\n*** End Patch", "a: a hunk line"),
])
def test_a_malformed_patch_is_an_error_that_names_where(patch: str, where: str):
    with pytest.raises(PatchError, match=where):
        read_patch(patch, files())


def test_codex_shell_and_patches_map_to_the_calls_the_guard_judges(tmp_path: Path):
    (tmp_path / "app.py").write_text("v = 1\n")
    (bash,) = codex_calls("c1", "Bash", {"command": "ls -la"}, False, tmp_path)
    assert (bash.name, bash.arguments) == ("bash", {"command": "ls -la"})
    patch = "*** Begin Patch\n*** Update File: app.py\n@@\n-v = 1\n+v = 2\n*** Add File: t.py\n+ok\n*** End Patch"
    for name, command in (("Bash", f"apply_patch <<'EOF'\n{patch}\nEOF"), ("Bash", f"apply_patch <<EOF\n{patch}\nEOF"),
                          ("apply_patch", patch)):
        writes = codex_calls("c2", name, {"command": command}, False, tmp_path)
        assert [(c.id, c.name, c.arguments) for c in writes] == [
            ("c2.0", "write_file", {"path": "app.py", "content": "v = 2\n"}),
            ("c2.1", "write_file", {"path": "t.py", "content": "ok\n"})]
    moved = codex_calls("c3", "apply_patch", {"command": patch.replace("app.py\n", "app.py\n*** Move to: b.py\n", 1)},
                        False, tmp_path)
    assert [(c.arguments["path"], c.arguments["content"]) for c in moved[:2]] == [("app.py", ""), ("b.py", "v = 2\n")]


@pytest.mark.parametrize("name, tool_input, rule", [
    ("mcp__github__create_issue", {"title": "x"}, "tools.unknown"),
    ("view_image", {"path": "a.png"}, "tools.unknown"),
    ("web_search", {"query": "x"}, "commands.network"),
    ("Bash", {"command": ["ls"]}, "tools.arguments"),
    ("apply_patch", {"command": "*** Begin Patch\nnonsense\n*** End Patch"}, "tools.arguments"),
])
def test_codex_tools_that_cannot_be_judged_are_refused(tmp_path: Path, name: str, tool_input: dict, rule: str):
    decision = codex_calls("c", name, tool_input, False, tmp_path)
    assert isinstance(decision, Decision) and decision.verdict == "deny" and decision.rule == rule


def test_a_patch_reads_no_file_through_a_link_out_of_the_worktree(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "secret.txt").write_text("token = 1\n")
    (work / "link.txt").symlink_to(tmp_path / "secret.txt")
    patch = "*** Begin Patch\n*** Update File: link.txt\n@@\n-token = 1\n+token = 2\n*** End Patch"
    (call,) = codex_calls("c", "apply_patch", {"command": patch}, False, work)
    assert call.name == "edit_file"  # the file was not read: judged by its path (outside: denied)


def test_the_command_in_a_heredoc_is_only_a_patch_when_it_is_all_of_it():
    assert patch_in_command("apply_patch <<'EOF'\n*** Begin Patch\n*** End Patch\nEOF") is not None
    assert patch_in_command("apply_patch <<'EOF'\n*** Begin Patch\n*** End Patch\nEOF\nrm -rf x") is None
    assert patch_in_command("cat <<'EOF'\nx\nEOF") is None


def test_the_codex_hooks_table_is_valid_toml_that_runs_the_hook(tmp_path: Path):
    tables = tomllib.loads(codex_hooks("/opt/py thon/bin/python3", tmp_path / 'a "b"' / "hook.py"))
    (pre,) = tables["hooks"]["PreToolUse"]
    command = pre["hooks"][0]["command"]
    assert pre["matcher"] == "*" and command.startswith("'/opt/py thon/bin/python3' -I -S ")
    assert command.endswith(" codex pre")


def hook(url: str, token: str, event: dict) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_GATEWAY_URL": url, "TETHER_GATEWAY_TOKEN": token}
    return subprocess.run([sys.executable, "-I", "-S", str(HOOK_SCRIPT), "codex", "pre"], input=json.dumps(event),
                          env=env, capture_output=True, text=True, timeout=30)


def test_the_codex_hook_says_nothing_to_allow_and_denies_what_it_cannot_wait_for(ledger: Ledger, tmp_path: Path):
    policy = parse_policy('[commands]\ndeny = ["curl"]\n[ownership.protected]\n"owned.py" = ["alice"]\n',
                          Path("gw.toml"))
    turns = tmp_path / "turns.json"
    turns.write_text("[]")
    token, run_id = issue_token(ledger, "bob", f"scripted:{turns}", policy)
    broken, _ = issue_token(ledger, "eve", f"scripted:{tmp_path / 'missing.json'}", policy)
    base = {"session_id": "s", "cwd": str(tmp_path), "hook_event_name": "PreToolUse"}
    with serving(Gateway(ledger)) as url:
        allowed = hook(url, token, {**base, "tool_use_id": "c1", "tool_name": "Bash", "tool_input": {"command": "ls"}})
        denied = hook(url, token, {**base, "tool_use_id": "c2", "tool_name": "Bash",
                                   "tool_input": {"command": "curl x"}})
        owned = hook(url, token, {**base, "tool_use_id": "c3", "tool_name": "apply_patch", "tool_input": {
            "command": "*** Begin Patch\n*** Add File: owned.py\n+x\n*** End Patch"}})
        stranger = hook(url, "tg-not-a-token", {**base, "tool_name": "Bash", "tool_input": {"command": "ls"}})
        no_upstream = hook(url, broken, {**base, "tool_name": "Bash", "tool_input": {"command": "ls"}})
    assert allowed.returncode == 0 and allowed.stdout == ""
    answer = json.loads(denied.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "commands.deny" in answer["permissionDecisionReason"]
    answer = json.loads(owned.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "alice" in answer["permissionDecisionReason"]
    assert stranger.returncode == 2 and "unknown or revoked gateway token" in stranger.stderr
    assert no_upstream.returncode == 2 and "missing.json" in no_upstream.stderr  # fails closed, says why
    events = [e.data for e in ledger.events(run_id)]
    assert [e.name for e in events if e.type == "tool_call"] == ["Bash", "Bash", "apply_patch"]
    assert ledger.verify(run_id).ok


def test_tether_hook_reads_the_phase_from_the_event_and_fails_closed_on_bad_input(ledger: Ledger, tmp_path: Path):
    policy = parse_policy('[commands]\ndeny = ["curl"]\n', Path("gw.toml"))
    turns = tmp_path / "turns.json"
    turns.write_text("[]")
    token, run_id = issue_token(ledger, "bob", f"scripted:{turns}", policy)
    event = {"hook_event_name": "PreToolUse", "tool_use_id": "c1", "tool_name": "Bash",
             "tool_input": {"command": "curl example.com"}, "cwd": str(tmp_path)}
    with serving(Gateway(ledger)) as url:
        env = {**os.environ, "TETHER_GATEWAY_URL": url, "TETHER_GATEWAY_TOKEN": token}
        def tether_hook(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "tether", "hook", *args], input=stdin, env=env,
                                  capture_output=True, text=True, timeout=60)
        denied = tether_hook("claude-code", stdin=json.dumps(event))
        malformed = tether_hook("claude-code", stdin="{not json")
        no_name = tether_hook("codex", stdin=json.dumps({"tool_name": "Bash", "tool_input": {"command": "ls"}}))
        wrong_agent = tether_hook("aider", stdin=json.dumps(event))
    answer = json.loads(denied.stdout)["hookSpecificOutput"]
    assert denied.returncode == 0 and answer["permissionDecision"] == "deny"
    for failed, says in ((malformed, "hook_event_name"), (no_name, "hook_event_name"), (wrong_agent, "usage")):
        assert failed.returncode == 2 and says in failed.stderr, failed.stderr
    assert [e.type for e in ledger.events(run_id)].count("tool_call") == 1 and ledger.verify(run_id).ok
