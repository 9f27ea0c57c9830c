"""The real embedded models through llama.cpp: the harness with Qwen2.5-Coder-1.5B in-process (the
0.5B solves none of the easy tasks in an agent loop: see the README), and the 1.5B behind the
openai provider through llama.cpp's own OpenAI-compatible server on loopback. Slow: a minute or two.
scripts/setup installs llama.cpp and the model; TETHER_SKIP_LOCAL=1 skips these tests knowingly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git, payloads
from tests.gateway.serve import free_port
from tether.agents.harness import SYSTEM_PROMPT
from tether.ledger import Ledger
from tether.models import make_provider
from tether.models.catalog import KNOWN, model_file, status
from tether.models.tools import SPECS
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("TETHER_SKIP_LOCAL") == "1", reason="TETHER_SKIP_LOCAL=1")]
CAPABLE = KNOWN["qwen2.5-coder-1.5b"]
POLICY = """
[agent]
check_after_write = true
[budget]
max_steps = 4
[[checks]]
name = "tests"
command = "python -m pytest -q -p no:cacheprovider hello_world_test.py"
"""
STUB = "def hello():\n    pass\n"
TEST = ("import unittest\nfrom hello_world import hello\n\n\nclass HelloWorldTest(unittest.TestCase):\n"
        "    def test_say_hi(self):\n        self.assertEqual(hello(), 'Hello, World!')\n")
TASK = ("Implement hello() in hello_world.py so that hello_world_test.py passes: it must return the string "
        f"'Hello, World!'.\n\nThe current hello_world.py:\n```python\n{STUB}```")


def present(model) -> Path:
    assert status(model) == "verified", f"run scripts/setup (or: tether models pull {model.name})"
    return model_file(model)


@pytest.fixture
def hello_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "hello"
    repo.mkdir()
    (repo / "hello_world.py").write_text(STUB)
    (repo / "hello_world_test.py").write_text(TEST)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "hello")
    return repo


def check_real_model_run(ledger: Ledger, summary: dict, priced: bool = True) -> list[dict]:
    responses = payloads(ledger, summary["run_id"], "model_response")
    assert responses, summary
    assert all(r["usage"]["input_tokens"] > 0 and r["usage"]["output_tokens"] > 0 for r in responses)
    assert not any(r["usage"]["estimated"] for r in responses)  # the model's own counts
    assert summary["usage"]["usd"] == 0
    assert all(r["price_known"] == priced for r in responses)  # a local model costs 0; an unknown server model, unknown
    assert ledger.verify(summary["run_id"]).ok
    return responses


def test_harness_with_the_embedded_model_solves_an_easy_task(hello_repo, tmp_path):
    present(CAPABLE)
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    summary = start_run(ledger, RunSpec(TASK, hello_repo, parse_policy(POLICY, Path("t.toml")),
                                        model="local:qwen2.5-coder-1.5b"))
    check_real_model_run(ledger, summary)
    assert summary["status"] == "succeeded", summary
    assert "Hello, World!" in git(hello_repo, "show", f"{summary['branch']}:hello_world.py")


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible server with the 1.5B, on loopback: its base URL."""
    model_path = present(CAPABLE)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host",
                               "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--model_alias", "qwen-local"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "llama.cpp server did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_1_5b_behind_the_openai_provider_via_llama_cpp_server(llama_server, tmp_path):
    """llama.cpp's server returns the model's tool calls as text (fenced, bare, or with comments): the
    openai provider must read them, or the run loops to its step budget (issue 14, item 10)."""
    repo = tmp_path / "done"
    repo.mkdir()
    (repo / "hello_world.py").write_text("def hello():\n    return 'Hello, World!'\n")
    (repo / "hello_world_test.py").write_text(TEST)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "hello")
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    task = "hello() already returns 'Hello, World!' and its test passes. Nothing is left to do: submit now."
    summary = start_run(ledger, RunSpec(task, repo, parse_policy(POLICY, Path("t.toml")),
                                        model="openai:qwen-local", base_url=llama_server))
    responses = check_real_model_run(ledger, summary, priced=False)
    assert responses[0]["model"]  # the server named the model it ran
    calls = [call for response in responses for call in response["tool_calls"]]
    assert calls and all(call["id"].startswith("call_text_") for call in calls)  # read from the text
    assert summary["status"] == "succeeded", summary


def test_text_actions_through_the_server_are_decoded_under_the_grammar(llama_server, hello_repo, tmp_path):
    """`[agent] actions = "text"`: the server gets the action grammar with each request (llama.cpp's
    `grammar` field), so every reply is exactly one action; the first one writes the file the task names."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    policy = parse_policy('[agent]\nactions = "text"\n' + POLICY.removeprefix("\n[agent]\n"), Path("t.toml"))
    summary = start_run(ledger, RunSpec(TASK, hello_repo, policy, model="openai:qwen-local", base_url=llama_server))
    responses = check_real_model_run(ledger, summary, priced=False)
    assert summary["status"] == "succeeded", summary
    assert responses[0]["content"].startswith("FILE: hello_world.py\n```")
    assert all(len(r["tool_calls"]) == 1 for r in responses)


def test_every_constrained_reply_is_one_action_or_the_start_of_one():
    """Asked for anything, the model answers in the action format and nothing around it; a reply the
    budget did not cut short is exactly one action. (Inside a fence the text is free: asked for an
    essay, the 1.5B may write it into a bash block until the budget ends it, which is then no action
    and gets the format back.)"""
    provider = make_provider("local:qwen2.5-coder-1.5b")
    budget, complete = 300, 0
    for task in (TASK, "Show me which files are in this repository.",
                 "Explain in three paragraphs what a git rebase does, then list some shell commands."):
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": task}]
        reply = provider.complete(messages, SPECS, budget)
        assert reply.content.startswith(("```bash\n", "FILE: ", "SUBMIT")), reply.content
        if reply.usage.output_tokens < budget:
            complete += 1
            assert len(reply.tool_calls) == 1, reply.content
            assert reply.content.rstrip().endswith(("```", "SUBMIT")), reply.content
    assert complete >= 2


def test_a_long_prompt_stops_at_the_deadline_before_any_reply():
    """The prompt's evaluation ends at the deadline too: llama.cpp cannot be stopped inside its own
    (6,600 new tokens took 3 minutes on two cores), so Tether evaluates it a few tokens at a time."""
    provider = make_provider("local:qwen2.5-coder-1.5b")
    listing = "\n".join(f"def step_{i}(value):\n    return value * {i} + {i * 7 % 13}" for i in range(330))
    long = [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{TASK}\n\nThe module you may use:\n```python\n{listing}\n```"}]
    cut = provider.complete(long, SPECS, 300, deadline=time.time() + 3)
    assert cut.tool_calls == [] and "wall-time budget" in cut.content
    assert cut.usage.input_tokens > 4000 and cut.usage.output_tokens == 0
    assert provider.llm.n_tokens < cut.usage.input_tokens  # stopped part-way through the prompt, not after it
    # The half-evaluated prompt leaves the instance whole: the next call is answered in full.
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": TASK}]
    whole = provider.complete(messages, SPECS, 300, deadline=time.time() + 120)
    assert len(whole.tool_calls) == 1 and whole.content.startswith("FILE: hello_world.py\n"), whole.content


def test_a_generation_stops_at_the_deadline_and_the_model_answers_whole_after():
    """The run's wall-time budget ends mid-reply: llama.cpp stops there (not at the reply budget), the
    cut reply is no action, and the same instance then answers the next call in full."""
    provider = make_provider("local:qwen2.5-coder-1.5b")
    essay = [{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": "Write a 400-line Python module of sorting algorithms to sorts.py, "
                                         "each with a long docstring."}]
    cut = provider.complete(essay, SPECS, 700, deadline=time.time() + 2)
    assert cut.tool_calls == [] and "wall-time budget" in cut.content
    assert cut.usage.output_tokens < 700 and cut.usage.input_tokens > 0
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": TASK}]
    whole = provider.complete(messages, SPECS, 300, deadline=time.time() + 120)
    assert len(whole.tool_calls) == 1 and whole.content.startswith("FILE: hello_world.py\n"), whole.content


def test_asked_to_reflect_the_model_writes_one_note_and_nothing_else():
    """[memory] reflect offers only `remember`: under its grammar the 1.5B's reply is one note."""
    from tether.agents.harness import REFLECT
    from tether.models.tools import MEMORY_SPECS, TOOLS

    provider = make_provider("local:qwen2.5-coder-1.5b")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": TASK},
                {"role": "assistant", "content": "```bash\npython -m pytest -q\n```"},
                {"role": "tool", "content": "exit code 1\nModuleNotFoundError: No module named 'hello_world'"},
                {"role": "user", "content": REFLECT}]
    reply = provider.complete(messages, [TOOLS["remember"].spec], 120)
    assert reply.content.startswith("REMEMBER: "), reply.content
    assert [call.name for call in reply.tool_calls] == ["remember"] and reply.tool_calls[0].arguments["text"].strip()
    offered = provider.complete(messages[:2], MEMORY_SPECS, 300)  # with memory on, the work comes first
    assert len(offered.tool_calls) == 1 and offered.tool_calls[0].name != "remember", offered.content
