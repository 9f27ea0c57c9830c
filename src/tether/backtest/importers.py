"""Read other agents' trajectories (gzip or plain JSON) into ImportedRuns.

Formats: mini-swe-agent `mini-swe-agent-1` in both variants (1.x: one fenced bash block per
assistant message, the next user message is the observation; 2.x: OpenAI-style tool_calls and
`tool` observation messages), SWE-agent's `.traj` (classic and 1.x); OpenHands, the agents' own
session logs and ATIF in their modules. Labels: see labels.py."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tether.backtest.atif import import_atif, is_atif
from tether.backtest.labels import LabelFinder, Labels
from tether.backtest.openhands import import_openhands
from tether.backtest.sessions import import_claude_code, import_codex, is_claude_code, is_codex
from tether.backtest.trajectory import ImportedRun, ImportedStep
from tether.errors import TetherError

_BASH_BLOCK = re.compile(r"```bash\s*\n(.*?)\n```", re.DOTALL)
_RETURNCODE = re.compile(r"<returncode>(-?\d+)</returncode>")
# Found in folders: trajectories, ATIF files, Codex rollouts and Claude Code transcripts (named by their
# session's UUID); any other JSON or JSONL there (predictions, reports) is not a run. A file given
# by name is read whatever it is called.
_TRAJECTORY_NAME = re.compile(r"\.traj(\.json)?(\.gz)?$|(^|\.)(atif|trajectory)\.json(\.gz)?$"
                              r"|^rollout-.*\.jsonl(\.gz)?$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                              r"\.jsonl(\.gz)?$")


T = TypeVar("T")


class ImportError_(TetherError):
    pass


def read_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: cannot read JSON: {exc}") from exc


def _spread(total: float, weights: list[float]) -> list[float]:
    norm = sum(weights)
    if not weights:
        return []
    if norm <= 0:
        return [total / len(weights)] * len(weights)
    return [total * w / norm for w in weights]


def _fill_missing_costs(steps: list[ImportedStep], known: list[bool], total: float, notes: list[str]) -> None:
    """Steps whose cost was not recorded share what the recorded total leaves over."""
    missing = [s for s, k in zip(steps, known, strict=True) if not k]
    if not missing:
        return
    left = max(0.0, total - sum(s.cost_usd for s, k in zip(steps, known, strict=True) if k))
    for step, share in zip(missing, _spread(left, [max(1, s.input_tokens) for s in missing]), strict=True):
        step.cost_usd = share
    notes.append(f"{len(missing)} of {len(steps)} steps had no recorded cost; they share the rest of the "
                 "recorded total in proportion to their prompt tokens")


# mini-swe-agent ---------------------------------------------------------------------------------


def _mini_v1(messages: list[dict[str, Any]], notes: list[str]) -> tuple[list[ImportedStep], list[bool]]:
    steps: list[ImportedStep] = []
    known: list[bool] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        content = message.get("content") or ""
        blocks = _BASH_BLOCK.findall(content)
        following = messages[index + 1] if index + 1 < len(messages) else {}
        observation = following.get("content", "") if following.get("role") == "user" else ""
        code = _RETURNCODE.search(observation)
        response = (message.get("extra") or {}).get("response") or {}
        usage = response.get("usage") or {}
        cost = usage.get("cost")
        steps.append(ImportedStep(
            command=blocks[0] if len(blocks) == 1 else "",  # a format error: no single action
            output=observation, exit_code=int(code.group(1)) if code else None, content=content,
            input_tokens=int(usage.get("prompt_tokens") or 0), output_tokens=int(usage.get("completion_tokens") or 0),
            cost_usd=float(cost or 0.0), ts=response.get("created"),
        ))
        known.append(cost is not None)
    return steps, known


def _mini_v2(messages: list[dict[str, Any]], notes: list[str]) -> tuple[list[ImportedStep], list[bool]]:
    observations = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool"}
    steps: list[ImportedStep] = []
    known: list[bool] = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        extra = message.get("extra") or {}
        usage = (extra.get("response") or {}).get("usage") or {}
        calls = message.get("tool_calls") or [{}]
        for position, call in enumerate(calls):
            try:
                arguments = json.loads((call.get("function") or {}).get("arguments") or "{}")
            except json.JSONDecodeError:
                arguments = {}
            observed = observations.get(call.get("id"), {})
            observed_extra = observed.get("extra") or {}
            first = position == 0  # a turn's cost and tokens belong to its first call
            steps.append(ImportedStep(
                command=str(arguments.get("command", "")),
                output=str(observed_extra.get("raw_output", observed.get("content", ""))),
                exit_code=observed_extra.get("returncode"), content=message.get("content") or "",
                input_tokens=int(usage.get("prompt_tokens") or 0) if first else 0,
                output_tokens=int(usage.get("completion_tokens") or 0) if first else 0,
                cost_usd=float(extra.get("cost") or 0.0) if first else 0.0,
                ts=extra.get("timestamp") or observed_extra.get("timestamp"),
            ))
            known.append(extra.get("cost") is not None or not first)
    return steps, known


def import_mini(path: Path, data: dict[str, Any]) -> ImportedRun:
    messages = data.get("messages") or []
    info = data.get("info") or {}
    notes: list[str] = []
    v2 = any(m.get("role") in ("tool", "exit") or m.get("tool_calls") for m in messages)
    steps, known = (_mini_v2 if v2 else _mini_v1)(messages, notes)
    stats = info.get("model_stats") or {}
    total = float(stats.get("instance_cost") or sum(s.cost_usd for s in steps))
    _fill_missing_costs(steps, known, total, notes)
    exit_message = next((m for m in reversed(messages) if m.get("role") == "exit"), None)
    exit_status = info.get("exit_status") or ((exit_message or {}).get("extra") or {}).get("exit_status")
    model = (((info.get("config") or {}).get("model") or {}).get("model_name")) or "unknown"
    task = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
    return ImportedRun(
        source="mini-swe-agent-1", path=str(path), instance_id=data.get("instance_id") or _instance_from(path),
        agent=f"mini-swe-agent {info.get('mini_version', '2.x' if v2 else '1.x')}", model=model, task=task[:2000],
        steps=steps, resolved=None, exit_status=exit_status, total_cost_usd=total, notes=notes,
    )


# SWE-agent ------------------------------------------------------------------------------------------


def import_swe_agent(path: Path, data: dict[str, Any]) -> ImportedRun:
    trajectory = data.get("trajectory") or []
    history = data.get("history") or []
    info = data.get("info") or {}
    stats = info.get("model_stats") or {}
    total = float(stats.get("instance_cost") or 0.0)
    # Per step, only totals exist: spread them in proportion to the context each call sent
    # (the history up to that assistant turn), which is what a token-priced call costs.
    context: list[float] = []
    seen = 0
    for message in history:
        seen += len(message.get("content") or "")
        if message.get("role") == "assistant":
            context.append(float(seen))
    if len(context) != len(trajectory):
        context = [1.0] * len(trajectory)
    costs = _spread(total, context)
    sent = _spread(float(stats.get("tokens_sent") or 0), context)
    received = _spread(float(stats.get("tokens_received") or 0), [1.0] * len(trajectory))
    steps = [
        ImportedStep(command=str(step.get("action") or "").strip(), output=str(step.get("observation") or ""),
                     exit_code=None, content=str(step.get("response") or ""), input_tokens=round(sent[i]),
                     output_tokens=round(received[i]), cost_usd=costs[i])
        for i, step in enumerate(trajectory)
    ]
    task = next((m.get("content", "") for m in history if m.get("role") == "user"), "")
    return ImportedRun(
        source="swe-agent-traj", path=str(path), instance_id=_instance_from(path), agent="SWE-agent",
        model=path.parent.parent.name if path.parent.name == "trajs" else "unknown", task=task[:2000], steps=steps,
        resolved=None, exit_status=info.get("exit_status"), total_cost_usd=total,
        notes=["per-step cost and tokens are the run totals spread over its steps in proportion to the "
               "context each call sent; exit codes and timestamps are not recorded"],
    )


def _instance_from(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".json", ".traj"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".traj")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    lines: list[dict[str, Any]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ImportError_(f"{path}:{number}: not a JSON line: {exc}") from exc
                    if isinstance(value, dict):
                        lines.append(value)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: cannot read: {exc}") from exc
    return lines


def import_file(path: Path) -> ImportedRun:
    if ".jsonl" in path.suffixes:
        lines = read_jsonl(path)
        if is_codex(lines):
            return _shaped(path, "Codex rollout", import_codex, lines)
        if is_claude_code(lines):
            return _shaped(path, "Claude Code transcript", import_claude_code, lines)
        raise ImportError_(f"{path}: a JSONL file that is neither a Claude Code transcript nor a Codex rollout")
    data = read_json(path)
    if isinstance(data, list) and any(isinstance(e, dict) and ("action" in e or "observation" in e) for e in data):
        return _shaped(path, "OpenHands", import_openhands, {"history": data})
    if not isinstance(data, dict):
        raise ImportError_(f"{path}: expected a JSON object, got {type(data).__name__}")
    if is_atif(data):
        return _shaped(path, "ATIF", import_atif, data)
    if data.get("trajectory_format") == "mini-swe-agent-1" or "messages" in data:
        return _shaped(path, "mini-swe-agent", import_mini, data)
    if "trajectory" in data:
        return _shaped(path, "SWE-agent", import_swe_agent, data)
    if isinstance(data.get("history"), list):
        return _shaped(path, "OpenHands", import_openhands, data)
    raise ImportError_(f"{path}: not a trajectory Tether reads (mini-swe-agent, SWE-agent, OpenHands, ATIF, "
                       "a Claude Code transcript or a Codex rollout)")


def _shaped(path: Path, kind: str, importer: Callable[[Path, Any], T], data: Any) -> T:
    """Run a reader over well-formed JSON that may not have the shape it expects (a list where an
    object belongs, a number where a text does): a clear error naming the file, not a traceback."""
    try:
        return importer(path, data)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise ImportError_(f"{path}: read as a {kind} file, but a value has the wrong shape "
                           f"({type(exc).__name__}: {exc})") from exc


def discover(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and _TRAJECTORY_NAME.search(p.name))
        elif path.exists():
            yield path
        else:
            raise ImportError_(f"{path}: no such file or directory")


def load_runs(paths: list[Path], labels: Labels | None = None, finder: LabelFinder | None = None
              ) -> Iterator[ImportedRun]:
    """Every trajectory under `paths`, labelled where a label can be found (`labels` first)."""
    finder = finder if finder is not None else LabelFinder(labels)
    for given in paths:
        for path in discover([given]):
            run = import_file(path)
            resolved, source = finder.label(path, run.instance_id)
            if source is not None:
                run.resolved, run.label_source = resolved, source
            elif run.resolved is not None:  # the trajectory records its own outcome (ATIF, OpenHands)
                run.label_source = f"{path} (its own record)"
            run.collection = given.name
            yield run
