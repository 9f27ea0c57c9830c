"""What decoding under the action grammar costs per generated token, against unconstrained decoding,
with the same model, prompts and reply budget in the same process.

    .venv/bin/python benchmarks/bench_grammar.py [--model local:qwen2.5-coder-1.5b] [--prompts 6] [--rounds 2]

Each prompt is a task's first turn as the agent sends it (system prompt with the action format, the
task naming the file to write), evaluated once before timing, so both sides read it from llama.cpp's
prompt cache and the time is generation. The constrained side decodes under the first turn's
grammar (that file, whole), the other freely; both write code for up to --tokens tokens. The two
sides alternate, so a machine that gets busier slows both alike. Figures: milliseconds per
generated token for each, and their ratio (constrained / unconstrained). Left free, the 1.5B often
answers with a one-line command, so the free side's tokens are few and carry more of the fixed cost
per reply: the ratio is then a lower bound."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.agents.harness import SYSTEM_PROMPT
from tether.models import make_provider
from tether.models.grammar import file_grammar
from tether.models.local import _grammar
from tether.models.text_turns import render

EXERCISES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks" / "exercism-python" / "exercises"
TASKS = ["raindrops", "isogram", "hamming", "darts", "acronym", "scrabble-score", "leap", "pangram"]


def prompt(name: str) -> tuple[list[dict[str, str]], str]:
    """The rendered first turn, and the file it names."""
    folder = EXERCISES / name
    docs = (folder / ".docs" / "instructions.md").read_text()
    stub = next(p for p in folder.glob("*.py") if not p.name.endswith("_test.py"))
    task = f"Implement {stub.name} so that its tests pass.\n\n{docs}\n\nThe current {stub.name}:\n" \
           f"```python\n{stub.read_text()}```"
    return render([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": task}]), stub.name


def timed(llm: object, messages: list[dict[str, str]], grammar: object | None, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0.0,  # type: ignore[attr-defined]
                                     grammar=grammar)
    return time.perf_counter() - started, int(out["usage"]["completion_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    console = Console()
    llm = make_provider(args.model).llm  # type: ignore[attr-defined]
    per_token: dict[str, list[float]] = {"unconstrained": [], "grammar": []}
    totals = {side: [0.0, 0] for side in per_token}
    for name in TASKS[: args.prompts]:
        messages, path = prompt(name)
        grammar = _grammar(file_grammar(path))
        llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)  # the prompt, cached
        for round_ in range(args.rounds):
            order = ("unconstrained", "grammar") if round_ % 2 == 0 else ("grammar", "unconstrained")
            for side in order:
                seconds, tokens = timed(llm, messages, grammar if side == "grammar" else None, args.tokens)
                if tokens:
                    per_token[side].append(seconds / tokens)
                    totals[side][0] += seconds
                    totals[side][1] += tokens
        console.print(f"{name}: done")
    table = Table("decoding", "tokens", "ms per token (median)", "ms per token (all)",
                  title=f"{args.model}: {args.prompts} prompts x {args.rounds} rounds")
    for side, found in per_token.items():
        seconds, tokens = totals[side]
        table.add_row(side, str(tokens), f"{statistics.median(found) * 1000:.1f}", f"{seconds / tokens * 1000:.1f}")
    console.print(table)
    ratio = (totals["grammar"][0] / totals["grammar"][1]) / (totals["unconstrained"][0] / totals["unconstrained"][1])
    medians = statistics.median(per_token["grammar"]) / statistics.median(per_token["unconstrained"])
    console.print(f"cost per token, grammar / unconstrained: {ratio:.2f}x (of the medians {medians:.2f}x)")


if __name__ == "__main__":
    main()
