"""Every `tether` command the README shows exists, with every option it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli import app

README = Path(__file__).parents[1] / "README.md"


def shown_commands() -> list[str]:
    lines = []
    for line in README.read_text().splitlines():
        stripped = line.strip()
        for start in ("tether ", ".venv/bin/tether "):
            if line.startswith("    ") and stripped.startswith(start):
                lines.append(stripped.removeprefix(".venv/bin/").split("  #")[0].split(" # ")[0].strip())
    return sorted(set(lines))


def help_of(words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (words, result.output)
    return result.output


@pytest.mark.parametrize("line", shown_commands())
def test_each_readme_command_exists_with_its_options(line: str):
    words = [w for w in line.split()[1:] if not w.startswith(("-", "[", "'", '"'))]
    path: list[str] = []
    for word in words:  # the longest prefix of words that names a command or group
        if re.fullmatch(r"[a-z][a-z-]*", word) and f" {word} " in help_of(path).replace("│", " "):
            path.append(word)
        else:
            break
    assert path, line
    text = help_of(path)
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line):
        assert option in text, f"{line}: {' '.join(path)} has no {option}"


def test_the_readme_shows_commands():
    assert len(shown_commands()) > 20
