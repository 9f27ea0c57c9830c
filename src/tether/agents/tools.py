"""The harness's tools, executed (models/tools.py names them and their arguments). The guard has
already checked scopes and resolved paths when these run."""

from __future__ import annotations

from dataclasses import dataclass

from tether.agents.session import CheckResult, Session, ToolOutcome
from tether.guard.scopes import resolve_in_worktree
from tether.ledger import events as ev
from tether.models import ToolCall
from tether.models.base import seconds_until
from tether.models.tools import WRITE_TOOLS
from tether.workspace.files import read_regular, write_regular

READ_LIMIT = 100_000
EDIT_LIMIT = 8 << 20  # a file is read whole to be edited: larger ones are refused


@dataclass
class Toolbox:
    session: Session

    def execute(self, call: ToolCall) -> ToolOutcome:
        if call.name == "submit":
            return self._submit(call.id)
        if call.name == "remember":
            return self._remember(call)
        outcome: ToolOutcome = getattr(self, f"_{call.name}")(call.arguments)
        if outcome.ok and call.name in WRITE_TOOLS and self.session.policy.agent.check_after_write:
            return self._check_after_write(call.id, outcome)
        return outcome

    def _run_checks(self, call_id: str) -> tuple[list[CheckResult], str | None]:
        """The checks' results, and the report of the required ones that failed (None: all passed)."""
        results = self.session.run_checks(call_id)
        return results, failure_report(results)

    def _check_after_write(self, call_id: str, written: ToolOutcome) -> ToolOutcome:
        _, failures = self._run_checks(call_id)
        if failures is None:
            return ToolOutcome(True, f"{written.observation}\nThe required checks pass.", finished=True)
        return ToolOutcome(True, f"{written.observation}\nThe required checks fail:\n\n{failures}")

    def _path(self, path: str):
        return self.session.worktree.path / resolve_in_worktree(self.session.worktree.path, path)

    def _bash(self, args: dict) -> ToolOutcome:
        timeout = seconds_until(self.session.wall_deadline(), self.session.policy.commands.timeout_s)
        result = self.session.sandbox.run(args["command"], timeout)
        return ToolOutcome(result.exit_code == 0 and not result.timed_out,
                           f"exit code {result.exit_code}\n{result.output}", result.exit_code, result.output_digest,
                           result.duration_s, write_limited=result.write_limited, timed_out=result.timed_out)

    def _read_file(self, args: dict) -> ToolOutcome:
        path = self._path(args["path"])
        try:
            data, size = read_regular(path, READ_LIMIT)
        except OSError as exc:
            return ToolOutcome(False, f"cannot read {args['path']}: {exc.strerror or exc}")
        text = data.decode("utf-8", "replace")
        if size > len(data):
            text += f"\n[truncated: {size - len(data)} more bytes]"
        return ToolOutcome(True, text)

    def _write(self, relative: str, text: str, verb: str) -> ToolOutcome:
        root = self.session.worktree.path
        try:
            write_regular(root, self._path(relative), text.encode("utf-8", "replace"))
        except OSError as exc:
            return ToolOutcome(False, f"cannot write {relative}: {exc.strerror or exc}")
        return ToolOutcome(True, verb)

    def _write_file(self, args: dict) -> ToolOutcome:
        return self._write(args["path"], args["content"], f"wrote {args['path']} ({len(args['content'])} chars)")

    def _edit_file(self, args: dict) -> ToolOutcome:
        try:
            data, size = read_regular(self._path(args["path"]), EDIT_LIMIT)
            if size > len(data):
                return ToolOutcome(False, f"cannot edit {args['path']}: larger than {EDIT_LIMIT >> 20} MiB")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return ToolOutcome(False, f"cannot edit {args['path']}: {getattr(exc, 'strerror', None) or exc}")
        count = text.count(args["old"]) if args["old"] else 0
        if count != 1:
            return ToolOutcome(False, f"`old` must occur exactly once in {args['path']}; it occurs {count} times")
        return self._write(args["path"], text.replace(args["old"], args["new"], 1), f"edited {args['path']}")

    def _remember(self, call: ToolCall) -> ToolOutcome:
        """Keep the note the guard allowed; later runs of this repository are given it."""
        door = self.session.guard.memory
        entry = door.keep(call.arguments["text"], call.id) if door is not None else None
        if entry is None:
            return ToolOutcome(False, "this run keeps no memory")
        if door is not None and door.replaying is None:
            self.session.record(ev.MemoryWritten(entry_id=entry.id, text=entry.text, call_id=call.id,
                                                 state="pending" if entry.state == "pending" else "active"))
        waits = " It is given to later runs once a person approves it." if door.policy.require_approval else ""
        return ToolOutcome(True, f"remembered as {entry.id}.{waits}")

    def _submit(self, call_id: str) -> ToolOutcome:
        if self.session.hands_over:  # an executor's part is judged with everyone's, by the reviewer
            return ToolOutcome(True, "handed over to the reviewer", finished=True)
        results, failures = self._run_checks(call_id)
        if failures is None:
            names = ", ".join(r.name for r in results) or "none configured"
            return ToolOutcome(True, f"submitted; required checks passed ({names})", finished=True)
        return ToolOutcome(False, f"Required checks failed; fix and submit again.\n\n{failures}", rework=True)


def failure_report(results: list[CheckResult]) -> str | None:
    """The output of the required checks that failed, for the model; None when they all passed."""
    failed = [r for r in results if r.required and not r.passed]
    if not failed:
        return None
    return "\n\n".join(f"## {r.name} (exit code {r.exit_code})\n{r.output[-3000:]}" for r in failed)
