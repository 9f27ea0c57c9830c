"""Suites on disk and the Exercism importer, on the real shared data where it is present."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tether.evals.exercism import _passes, import_exercism, visible_part
from tether.evals.suite import SuiteError, load_suite, prepare_repo

EXERCISM = Path(__file__).resolve().parents[3] / "shared" / "data" / "tasks" / "exercism-python"
GOOD = 'instruction = "x"\nvisible_check = "true"\nhidden_check = "true"\n'


def make_task(root: Path, name: str, toml: str, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    (folder / "repo").mkdir(parents=True)
    for relative, text in (files or {"a.py": "a = 1\n"}).items():
        (folder / "repo" / relative).write_text(text)
    (folder / "task.toml").write_text(toml)
    return folder


@pytest.mark.parametrize(("toml", "message"), [
    ('visible_check = "true"\nhidden_check = "true"\n', "give exactly one of instruction and instruction_file"),
    (GOOD + 'instruction_file = "i.md"\n', "give exactly one of instruction and instruction_file"),
    ('instruction = "x"\nhidden_check = "true"\n', "visible_check: Field required"),
    (GOOD + "surprise = 1\n", "surprise: unknown key"),
    (GOOD + 'repo = "../elsewhere"\n', "repo '../elsewhere' points outside the task folder"),
    (GOOD + 'hidden = "nothing"\n', "hidden 'nothing' does not exist"),
    (GOOD + "[timeouts]\nagent_s = 0\n", "timeouts.agent_s: Input should be greater than 0"),
    ("instruction = \n", "invalid TOML"),
])
def test_bad_task_files_name_the_file_and_the_key(tmp_path: Path, toml: str, message: str) -> None:
    make_task(tmp_path, "t", toml)
    with pytest.raises(SuiteError) as error:
        load_suite(tmp_path)
    assert message in str(error.value) and str(tmp_path / "t" / "task.toml") in str(error.value)


def test_suite_selection_and_empty_suites(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no task folders"):
        load_suite(tmp_path)
    for name in ("alpha", "beta", "gamma"):
        make_task(tmp_path, name, GOOD)
    assert [t.name for t in load_suite(tmp_path, "a*,g*")] == ["alpha", "gamma"]
    with pytest.raises(SuiteError, match="no task matches 'z\\*'"):
        load_suite(tmp_path, "z*")


def test_prepare_repo_removes_files_and_commits_once(tmp_path: Path) -> None:
    make_task(tmp_path / "s", "t", GOOD + 'remove = ["secret.py", "docs"]\n',
              {"a.py": "a = 1\n", "secret.py": "answer = 42\n"})
    (tmp_path / "s" / "t" / "repo" / "docs").mkdir()
    (tmp_path / "s" / "t" / "repo" / "docs" / "x.md").write_text("spoiler\n")
    task = load_suite(tmp_path / "s")[0]
    repo = prepare_repo(task, tmp_path / "repo")
    assert sorted(p.name for p in repo.iterdir()) == [".git", "a.py"]
    again = prepare_repo(task, tmp_path / "repo")
    assert again == repo


def test_prepare_repo_refuses_removal_outside_the_repository(tmp_path: Path) -> None:
    make_task(tmp_path / "s", "t", GOOD + 'remove = ["../../outside"]\n')
    (tmp_path / "outside").write_text("keep me\n")
    with pytest.raises(SuiteError, match="points outside the repository"):
        prepare_repo(load_suite(tmp_path / "s")[0], tmp_path / "repo")
    assert (tmp_path / "outside").read_text() == "keep me\n"


def test_visible_part_keeps_the_first_half_of_each_class() -> None:
    source = ("import unittest\n\n\nclass A(unittest.TestCase):\n    def test_1(self):\n        pass\n\n"
              "    def test_2(self):\n        pass\n\n    @unittest.skip('x')\n    def test_3(self):\n        pass\n\n"
              "    def helper(self):\n        return 1\n")
    visible, kept, total = visible_part(source)
    names = [n.name for n in ast.walk(ast.parse(visible)) if isinstance(n, ast.FunctionDef)]
    assert names == ["test_1", "test_2", "helper"] and (kept, total) == (2, 3)
    assert "skip" not in visible


@pytest.mark.skipif(not EXERCISM.is_dir(), reason="shared Exercism data not beside this checkout")
def test_exercism_import_hides_half_the_tests_and_every_spoiler(tmp_path: Path) -> None:
    imported = import_exercism(EXERCISM, tmp_path / "suite", ["hamming", "ledger"])
    by_name = {item.name: item for item in imported}
    assert by_name["hamming"].kept and 0 < by_name["hamming"].visible_tests < by_name["hamming"].hidden_tests
    assert not by_name["ledger"].kept and by_name["ledger"].reason == "the stub already passes the hidden tests"
    task = load_suite(tmp_path / "suite")[0]
    repo_files = {p.name for p in (task.folder / "repo").iterdir()}
    assert repo_files == {"hamming.py", "hamming_test.py"}  # no .meta (the solution), no .docs
    hidden = (task.folder / "hidden" / "hamming_test.py").read_text()
    assert hidden == (EXERCISM / "exercises" / "hamming" / "hamming_test.py").read_text()
    assert "Calculate the Hamming" in task.text() and task.restore == ["hamming_test.py"]
    with pytest.raises(SuiteError, match="no exercise named nope"):
        import_exercism(EXERCISM, tmp_path / "other", ["nope"])


def test_a_solution_that_hangs_the_tests_does_not_pass_and_does_not_hang_the_scorer(tmp_path: Path) -> None:
    import_exercism(EXERCISM, tmp_path / "suite", ["hamming"])
    folder = tmp_path / "suite" / "hamming"
    hanging, right = tmp_path / "hanging.py", EXERCISM / "exercises" / "hamming" / ".meta" / "example.py"
    hanging.write_text("def distance(a, b):\n    while True:\n        pass\n")
    assert not _passes(folder, "hamming.py", hanging, "hamming_test.py", hidden=True, timeout_s=3)
    assert _passes(folder, "hamming.py", right, "hamming_test.py", hidden=True, timeout_s=60)
