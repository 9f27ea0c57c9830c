"""The session logs the agents teams run keep on their own, as imported runs: Claude Code's transcripts
(JSONL under ~/.claude/projects/<project>/<session>.jsonl) and Codex's rollouts (JSONL under
$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl). Read from the files those CLIs write (the tests
make them with the real binaries); each tool call is one step.

A tool that is not a shell becomes the command that would do the same (Write: `create PATH`, Edit:
`edit PATH`, Read: `cat PATH`, a patch: `apply_patch ...`), so the edit and repeat detectors see it.
Costs: Claude Code records the session's total (`cost-state`), spread over the steps by their
tokens; Codex records tokens only, priced from the price table when the model is in it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tether.backtest.trajectory import ImportedRun, ImportedStep, iso_ts
from tether.models.base import Usage
from tether.models.prices import cost_of

_EXIT_CODE = re.compile(r"^(?:Error: )?Exit code (\d+)")
_CODEX_EXIT = re.compile(r"Process exited with code (-?\d+)|^Exit code: (-?\d+)", re.MULTILINE)


def is_claude_code(lines: list[dict[str, Any]]) -> bool:
    return any(line.get("type") in ("user", "assistant") and "sessionId" in line for line in lines)


def is_codex(lines: list[dict[str, Any]]) -> bool:
    return any(line.get("type") in ("session_meta", "response_item") and "payload" in line for line in lines)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _claude_command(name: str, tool_input: dict[str, Any]) -> str:
    path = tool_input.get("file_path") or tool_input.get("notebook_path") or tool_input.get("path") or ""
    if name == "Bash":
        return str(tool_input.get("command", ""))
    if name == "Write":
        return f"create {path}"
    if name in ("Edit", "MultiEdit", "NotebookEdit"):
        return f"edit {path}"
    if name == "Read":
        return f"cat {path}"
    if name == "Grep":
        return f"grep -rn {json.dumps(tool_input.get('pattern', ''))} {path or '.'}"
    if name in ("Glob", "LS"):
        return f"find {path or '.'} -name {json.dumps(tool_input.get('pattern', '*'))}"
    return f"{name} {json.dumps(tool_input, sort_keys=True)}"


def import_claude_code(path: Path, lines: list[dict[str, Any]]) -> ImportedRun:
    results: dict[str, dict[str, Any]] = {}
    for line in lines:
        message = line.get("message") if isinstance(line.get("message"), dict) else {}
        if line.get("type") == "user" and isinstance(message.get("content"), list):
            for block in message["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    results[str(block.get("tool_use_id"))] = block
    steps: list[ImportedStep] = []
    counted: set[str] = set()  # a streamed reply is written one block per line, its usage on each
    model = "unknown"
    total = 0.0
    for line in lines:
        if line.get("type") == "cost-state":
            total = float(line.get("totalCostUSD") or 0.0)
        if line.get("type") != "assistant" or line.get("isSidechain"):
            continue
        message = line.get("message") if isinstance(line.get("message"), dict) else {}
        model = str(message.get("model") or model)
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
        first = str(message.get("id")) not in counted
        counted.add(str(message.get("id")))
        tokens_in = sum(int(usage.get(key) or 0) for key in ("input_tokens", "cache_creation_input_tokens",
                                                              "cache_read_input_tokens")) if first else 0
        tokens_out = int(usage.get("output_tokens") or 0) if first else 0
        content = message.get("content") if isinstance(message.get("content"), list) else []
        calls = [block for block in content if isinstance(block, dict) and block.get("type") == "tool_use"]
        text = "".join(str(block.get("text", "")) for block in content if isinstance(block, dict)
                       and block.get("type") == "text")
        for position, call in enumerate(calls or [{}]):
            result = results.get(str(call.get("id")), {})
            output = _text(result.get("content"))
            code = _EXIT_CODE.match(output)
            steps.append(ImportedStep(
                command=_claude_command(str(call.get("name", "")), call.get("input") or {}) if call else "",
                output=output, exit_code=(int(code.group(1)) if code else 1 if result.get("is_error") else 0)
                if call else None, content=text, input_tokens=tokens_in if position == 0 else 0,
                output_tokens=tokens_out if position == 0 else 0, ts=iso_ts(line.get("timestamp"))))
    notes = _price(steps, f"anthropic:{model}", total)
    session = next((str(line["sessionId"]) for line in lines if line.get("sessionId")), path.stem)
    task = next((_text((line.get("message") or {}).get("content")) for line in lines if line.get("type") == "user"
                 and isinstance((line.get("message") or {}).get("content"), str)), "")
    version = next((str(line["version"]) for line in lines if line.get("version")), "")
    return ImportedRun(source="claude-code-jsonl", path=str(path), instance_id=session,
                       agent=f"Claude Code {version}".strip(), model=model, task=task[:2000], steps=steps,
                       resolved=None, exit_status=None, total_cost_usd=sum(s.cost_usd for s in steps), notes=notes)


def import_codex(path: Path, lines: list[dict[str, Any]]) -> ImportedRun:
    outputs: dict[str, str] = {}
    for line in lines:
        payload = line.get("payload") if isinstance(line.get("payload"), dict) else {}
        if line.get("type") == "response_item" and payload.get("type") in ("function_call_output",
                                                                           "custom_tool_call_output"):
            output = payload.get("output")
            outputs[str(payload.get("call_id"))] = output if isinstance(output, str) else json.dumps(output)
    steps: list[ImportedStep] = []
    model = "unknown"
    session = path.stem
    task = ""
    for line in lines:
        payload = line.get("payload") if isinstance(line.get("payload"), dict) else {}
        kind, item = line.get("type"), payload.get("type")
        if kind == "session_meta":
            session = str(payload.get("id") or session)
        elif kind == "turn_context":
            model = str(payload.get("model") or model)
        elif kind == "response_item" and item == "message" and payload.get("role") == "user" and not task:
            task = _text(payload.get("content"))
        elif kind == "response_item" and item in ("function_call", "custom_tool_call"):
            command = _codex_command(str(payload.get("name", "")), payload)
            output = outputs.get(str(payload.get("call_id")), "")
            code = _CODEX_EXIT.search(output)
            steps.append(ImportedStep(command=command, output=output,
                                      exit_code=int(code.group(1) or code.group(2)) if code else None,
                                      ts=iso_ts(line.get("timestamp"))))
        elif kind == "event_msg" and item == "token_count" and steps:
            usage = ((payload.get("info") or {}).get("last_token_usage")) or {}
            last = steps[-1]
            if not last.input_tokens:  # one reply's tokens, reported after it
                last.input_tokens = int(usage.get("input_tokens") or 0)
                last.output_tokens = int(usage.get("output_tokens") or 0)
    notes = _price(steps, f"openai:{model}", None)
    return ImportedRun(source="codex-rollout", path=str(path), instance_id=session, agent="Codex", model=model,
                       task=task[:2000], steps=steps, resolved=None, exit_status=None,
                       total_cost_usd=sum(s.cost_usd for s in steps), notes=notes)


def _codex_command(name: str, payload: dict[str, Any]) -> str:
    if name == "apply_patch" or payload.get("type") == "custom_tool_call":
        return f"{name} {payload.get('input', '')}".strip()
    try:
        arguments = json.loads(payload.get("arguments") or "{}")
    except json.JSONDecodeError:
        return f"{name} {payload.get('arguments', '')}"
    command = arguments.get("cmd", arguments.get("command")) if isinstance(arguments, dict) else None
    if isinstance(command, list):
        return " ".join(map(str, command[2:] if command[:2] in (["bash", "-lc"], ["/bin/bash", "-lc"]) else command))
    return str(command) if command is not None else f"{name} {json.dumps(arguments, sort_keys=True)}"


def _price(steps: list[ImportedStep], provider: str, total: float | None) -> list[str]:
    """Per-step cost from the price table; else the recorded total spread by tokens."""
    priced = [cost_of(provider, Usage(s.input_tokens, s.output_tokens)) for s in steps]
    if total is not None and (any(p is None for p in priced) or not priced):
        weights = [s.input_tokens + s.output_tokens for s in steps]
        norm = sum(weights)
        for step, weight in zip(steps, weights, strict=True):
            step.cost_usd = total * weight / norm if norm else total / max(1, len(steps))
        return [f"per-step cost is the session's recorded total (${total:.4f}) spread by tokens"]
    for step, price in zip(steps, priced, strict=True):
        step.cost_usd = price or 0.0
    if any(p is None for p in priced):
        return [f"{provider} is not in the price table: costs are 0; tokens are recorded"]
    return []
