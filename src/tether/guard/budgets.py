"""Budgets: whether the next model call or tool call would pass one, judged on the run's meters."""

from __future__ import annotations

from tether.guard.decisions import Decision
from tether.ledger.meters import Meters
from tether.policy.schema import BudgetPolicy


def usd(value: float) -> str:
    """Money as people read it: cents above a dollar, four significant digits below ($0.0012)."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4g}" if value else "$0"


def check_model_call(meters: Meters, budget: BudgetPolicy, prompt_tokens: int, prompt_usd: float,
                     now: float | None, reply_usd: float = 0.0) -> Decision | None:
    """Stop before a model call that is certain to break the token budget (its prompt alone would),
    or that could break the money budget (its prompt and the longest reply it may get would): a run
    never spends past its `max_usd`. The step budget is each attempt's; tokens, money and time are
    the run's."""
    if budget.max_steps is not None and meters.steps - meters.attempt_start >= budget.max_steps:
        return Decision("stop", "budget.max_steps", f"step budget of {budget.max_steps} used")
    if budget.max_tokens is not None and meters.tokens + prompt_tokens > budget.max_tokens:
        return Decision("stop", "budget.max_tokens",
                        f"{meters.tokens} tokens used; the next prompt (~{prompt_tokens}) would pass "
                        f"the budget of {budget.max_tokens}")
    if budget.max_usd is not None and meters.usd + prompt_usd + reply_usd > budget.max_usd:
        return Decision("stop", "budget.max_usd",
                        f"{usd(meters.usd)} spent; the next call could cost up to {usd(prompt_usd + reply_usd)} "
                        f"(its prompt and a full reply), which would pass the budget of {usd(budget.max_usd)}")
    return check_wall(meters, budget, now)


def check_tool_call(meters: Meters, budget: BudgetPolicy, now: float | None) -> Decision | None:
    """Checked once the call's tool_call event is recorded, so the meter already counts it."""
    if budget.max_tool_calls is not None and meters.tool_calls > budget.max_tool_calls:
        return Decision("stop", "budget.max_tool_calls", f"tool-call budget of {budget.max_tool_calls} used")
    return check_wall(meters, budget, now)


def check_wall(meters: Meters, budget: BudgetPolicy, now: float | None) -> Decision | None:
    if budget.max_wall_s is not None and meters.wall_s(now) >= budget.max_wall_s:
        return Decision("stop", "budget.max_wall_s", f"wall-time budget of {budget.max_wall_s:g}s used")
    return None


def wall_deadline(meters: Meters, budget: BudgetPolicy, now: float) -> float | None:
    """The time.time() instant the wall-time budget ends (None: no such budget). A command, a check
    or a model call is given no longer, so the budget holds within a step and not only between steps."""
    return None if budget.max_wall_s is None else now + budget.max_wall_s - meters.wall_s(now)
