"""Every `tether` command the README and the docs show exists, with every option it names; the docs
site builds with no warning (`mkdocs build --strict`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from tether.cli import app

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def shown_commands() -> list[str]:
    lines = []
    for line in (line for page in PAGES for line in page.read_text().splitlines()):
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


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) < 200


def test_the_docs_site_builds_strictly(tmp_path: Path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True,
                           env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin"})
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "security" / "index.html").is_file()


def _is_group(command: object) -> bool:
    # Typer carries its own copy of click: its groups are not click.Group instances.
    return hasattr(command, "commands")


def _commands(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = [(path, group)]
    for name, command in group.commands.items():
        if _is_group(command):
            found += _commands(command, [*path, name])
        else:
            found.append(([*path, name], command))
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = typer.main.get_command(app)
    while _is_group(command) and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


@pytest.mark.parametrize("path, command", _commands(typer.main.get_command(app), []),
                         ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_every_help_has_an_example_that_parses(path: list[str], command: click.Command):
    declared = re.findall(r"Example: (tether .+?)(?:\n\s*\n|$)", " ".join((command.help or "").split(" ")), re.S)
    assert declared, f"tether {' '.join(path)} has no example in its help"
    shown = " ".join(help_of(path).replace("│", " ").split())
    for example in " && ".join(" ".join(e.split()) for e in declared).split(" && "):
        assert example in shown, f"tether {' '.join(path)} --help does not show {example!r}"
        if not example.startswith("tether "):
            continue  # another program in the same line (claude --settings ...)
        command = re.split(r" [<>|] ", example)[0]  # what the shell redirects is not the command's
        target, rest = _resolve(shlex.split(command)[1:])
        if _is_group(target) and not rest:
            continue
        target.make_context(target.name or "tether", list(rest))  # raises on an unknown option or argument
