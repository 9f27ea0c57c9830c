"""Where Tether keeps its files inside a repository."""

from __future__ import annotations

from pathlib import Path


def tether_dir(repo: Path) -> Path:
    """`<repo>/.tether`, created on first use and ignored by git, so the user's `git status`
    stays clean without editing their .gitignore."""
    path = repo / ".tether"
    path.mkdir(parents=True, exist_ok=True)
    marker = path / ".gitignore"
    if not marker.exists():
        marker.write_text("*\n")
    return path
