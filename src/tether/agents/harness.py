"""The harness architecture: one agent, one loop. The conversation is rebuilt from the run's
events, so a run continued after an approval (or a crash) sees exactly what it saw before."""

from __future__ import annotations

from tether.agents.session import Session
from tether.agents.tools import Toolbox
from tether.guard.decisions import RunEnded, RunStopped, RunSucceeded
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.models import Message, ToolCall
from tether.models.tools import TOOLS, specs

SYSTEM_PROMPT = """You are a careful software engineer working in a git repository.
Use the tools to inspect the code, make the smallest change that does the task, and run the
tests. Commands run in a sandbox without network. When you are done, submit: the task is finished
only when the required checks pass. If an action is denied by policy, do not repeat it unchanged."""

NUDGE = "Use one of the tools to continue, or call submit when you are done."
REFLECT = ("The run is over. If you learned something a later run on this repository should know (how to run "
           "its tests, where something lives, a trap that cost you steps), keep it with remember, in one or two "
           "sentences. Otherwise reply without a tool call.")


def conversation(system_prompt: str, task: str, events: list[StoredEvent],
                 nudge: str = NUDGE) -> tuple[list[Message], list[ToolCall]]:
    """(messages so far, tool calls of the last model turn that have no recorded result)."""
    messages: list[Message] = [{"role": "system", "content": system_prompt}, {"role": "user", "content": task}]
    pending: dict[str, ToolCall] = {}
    for event in events:
        data = event.data
        if isinstance(data, ev.ModelResponse):
            calls = [ToolCall(c.id, c.name, c.arguments) for c in data.tool_calls]
            messages.append({"role": "assistant", "content": data.content,
                             "tool_calls": [c.as_dict() for c in calls]})
            pending = {c.id: c for c in calls}
            if not calls:
                messages.append({"role": "user", "content": nudge})
        elif isinstance(data, ev.ToolResult):
            pending.pop(data.call_id, None)
            messages.append({"role": "tool", "tool_call_id": data.call_id, "content": data.observation})
    return messages, list(pending.values())


def run_harness(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    """Loop until the guard ends the run (success, stop, pause or failure) by raising RunEnded."""
    nudge = session.provider.format_hint or NUDGE
    messages, pending = conversation(system_prompt, task, events, nudge)
    toolbox = Toolbox(session)
    offered = specs(session.policy.memory.enabled)
    try:
        while True:
            for call in pending:
                observation = session.tool_call(call, toolbox.execute)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
            response = session.model_call(messages, offered)
            messages.append({"role": "assistant", "content": response.content,
                             "tool_calls": [c.as_dict() for c in response.tool_calls]})
            if not response.tool_calls:
                messages.append({"role": "user", "content": nudge})
            pending = response.tool_calls
    except (RunSucceeded, RunStopped) as ended:
        memory = session.policy.memory
        # a try of several that failed is not the run's end: only the run's end is reflected on
        last = (isinstance(ended, RunSucceeded) or session.policy.agent.attempts == 1) and \
            session.policy.agent.architecture not in ("research", "factory")  # a try's end is not the run's
        if memory.enabled and memory.reflect and last and not session.hands_over:
            reflect(session, toolbox, messages, ended)
        raise


def reflect(session: Session, toolbox: Toolbox, messages: list[Message], ended: RunEnded) -> None:
    """Ask for one note once the run's work is over; only `remember` is offered and only it is run.
    It is one model call past the step and time budgets (the work's), never past the money or token
    budgets: one that is used up ends the reflection, and the run's end stands as it was."""
    session.record(ev.Reflecting(ended=ended.status, reason=ended.reason))
    try:
        with session.past_work_budgets():
            response = session.model_call([*messages, {"role": "user", "content": REFLECT}],
                                          [TOOLS["remember"].spec])
            for call in response.tool_calls[:1]:
                if call.name == "remember":
                    session.tool_call(call, toolbox.execute)
    except RunEnded:
        pass
