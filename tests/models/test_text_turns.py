"""The text action format's turns: which grammar a reply is decoded under, how retries are sampled,
and that a reply repeating an earlier action is drawn again. The model here is a scripted function
of (grammar, temperature, seed); the real model under the grammar is in test_local_model.py."""

from __future__ import annotations

import pytest

from tether.models.base import Usage
from tether.models.grammar import action_grammar, file_grammar, named_file
from tether.models.text_turns import ACTIONS, RESAMPLES, clip, render, reply_grammar, text_turn

TASK = "Implement raindrops.py so that the tests in raindrops_test.py pass.\n\nConvert a number..."


@pytest.mark.parametrize("task, path", [
    (TASK, "raindrops.py"),
    ("Implement convert() in raindrops.py so that raindrops_test.py passes.", "raindrops.py"),
    ("Fix `src/pkg/core.py`: it divides by zero.", "src/pkg/core.py"),
    ("  Update docs/guide.md with the new flag", "docs/guide.md"),
    ("Make the tests pass.", None),
    ("Implement version 2.0 of the parser", None),  # a version, not a file
    ("Explain the design.\nImplement a.py later", None),  # named only after the first line
    ("Implement ../outside.py", None),
    ("Implement /etc/passwd.txt", None),
])
def test_the_file_a_task_names_on_its_first_line(task, path):
    assert named_file(task) == path


def test_the_first_turn_of_a_task_naming_a_file_may_only_write_it():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": TASK}]
    assert reply_grammar(messages) == file_grammar("raindrops.py")
    assert '"raindrops.py"' in file_grammar("raindrops.py") and "bash" not in file_grammar("raindrops.py")
    later = [*messages, {"role": "assistant", "content": "x", "tool_calls": []}]
    assert reply_grammar(later) == action_grammar()
    unnamed = [{"role": "system", "content": "s"}, {"role": "user", "content": "Make the tests pass."}]
    assert reply_grammar(unnamed) == action_grammar()


class Model:
    """Replies in order, recording how each was asked for."""

    def __init__(self, *replies: str):
        self.replies, self.asked = list(replies), []

    def __call__(self, rendered, grammar, temperature, seed):
        self.asked.append((grammar, temperature, seed, rendered))
        return self.replies.pop(0), Usage(10, 5)


WRITE = "FILE: raindrops.py\n```python\ndef convert(n):\n    return str(n)\n```"
OTHER = "FILE: raindrops.py\n```python\ndef convert(n):\n    return 'Pling'\n```"


def conversation(*replies: str) -> list[dict]:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": TASK}]
    for reply in replies:
        turn = text_turn(Model(reply), messages, ACTIONS, 0, "m")
        messages += [{"role": "assistant", "content": reply, "tool_calls": [c.as_dict() for c in turn.tool_calls]},
                     {"role": "tool", "tool_call_id": "c", "content": "The required checks fail: ..."}]
    return messages


def test_the_first_reply_is_greedy_and_every_later_one_sampled_with_its_own_seed():
    first = Model(WRITE)
    text_turn(first, conversation(), ACTIONS, 0, "m")
    assert first.asked[0][1:3] == (0.0, 0)
    seeds = set()
    for attempt, history in ((0, conversation(WRITE)), (1, conversation()), (1, conversation(WRITE))):
        model = Model(OTHER)
        text_turn(model, history, ACTIONS, attempt, "m")
        temperature, seed = model.asked[0][1:3]
        assert temperature > 0
        seeds.add(seed)
    assert len(seeds) == 3


def test_a_reply_repeating_an_earlier_action_is_drawn_again_and_all_draws_are_counted():
    model = Model(WRITE, OTHER)
    turn = text_turn(model, conversation(WRITE), ACTIONS, 0, "m")
    assert turn.tool_calls[0].arguments["content"] == "def convert(n):\n    return 'Pling'\n"
    assert [seed for _, _, seed, _ in model.asked] == sorted({seed for _, _, seed, _ in model.asked})
    assert turn.usage == Usage(20, 10)


def test_a_model_that_only_repeats_itself_is_let_through_for_the_repeat_brake():
    model = Model(*[WRITE] * (RESAMPLES + 1))
    turn = text_turn(model, conversation(WRITE), ACTIONS, 0, "m")
    assert len(model.asked) == RESAMPLES + 1 and turn.tool_calls[0].name == "write_file"


def test_without_tools_there_is_no_grammar_and_no_action():
    model = Model("plain words")
    turn = text_turn(model, conversation(), (), 0, "m")
    assert model.asked[0][0] is None and turn.tool_calls == [] and turn.content == "plain words"
    assert "Answer with exactly one action" not in model.asked[0][3][0]["content"]


def test_a_long_failure_keeps_its_tail_where_pytest_says_what_failed():
    output = "collected 9 items\n" + "x" * 5000 + "\nFAILED raindrops_test.py::test_15 - AssertionError"
    clipped = clip(output)
    assert len(clipped) < 3100 and clipped.startswith("collected") and clipped.endswith("AssertionError")



def test_a_conversation_too_long_for_the_context_keeps_the_task_and_the_latest_turns():
    history = conversation(WRITE, OTHER, WRITE.replace("str(n)", "n"))
    messages = [*history[:-1], {"role": "tool", "tool_call_id": "c", "content": "the latest result"}]
    model = Model(OTHER.replace("Pling", "Plang"))
    whole = sum(len(m["content"]) for m in render(messages))
    text_turn(model, messages, ACTIONS, 0, "m", max_prompt_chars=whole - 1)
    rendered = model.asked[0][3]
    assert rendered[0]["role"] == "system" and rendered[1]["content"].startswith(TASK)
    assert "1 earlier replies and their results are left out" in rendered[1]["content"]
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert rendered[-1]["content"].endswith("the latest result")
    assert sum(len(m["content"]) for m in rendered) <= whole  # the note is shorter than what it replaces
    untouched = Model(OTHER.replace("Pling", "Plang"))
    text_turn(untouched, messages, ACTIONS, 0, "m", max_prompt_chars=whole)
    assert untouched.asked[0][3] == render(messages)
