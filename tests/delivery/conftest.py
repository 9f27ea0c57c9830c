"""A forge world for delivery's tests: the user's checkout, the forge's bare copy served over git's
smart-HTTP protocol, and its REST API, all on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, git, run_scripted
from tests.delivery.servers import TOKEN, Forge, bare_repo, forge_server, git_http_server
from tether.ledger import Ledger
from tether.people import os_user

TOKEN_ENV = "TEST_FORGE_TOKEN"
WRONG = "def convert(number):\n    return str(number)\n"


@dataclass
class World:
    repo: Path  # the user's checkout
    remote: str  # the git server's URL of the forge's copy
    bare: Path
    api: str
    forge: Forge

    def policy(self, mode: str = "pull_request", **extra: str) -> str:
        lines = [f'mode = "{mode}"', f'remote = "{self.remote}"', f'forge = "{self.forge.kind}"',
                 f'api_url = "{self.api}"', 'repository = "acme/shop"', f'token_env = "{TOKEN_ENV}"',
                 *(f"{key} = {value}" for key, value in extra.items())]
        # CODEOWNERS names the reviewers; it does not also make the agent ask to write raindrops.py
        return CHECK + "[ownership]\ncodeowners = false\n[delivery]\n" + "\n".join(lines) + "\n"


@pytest.fixture(params=["github", "gitlab", "gitea"])
def world(request: pytest.FixtureRequest, repo: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    (repo / "CODEOWNERS").write_text(f"raindrops.py @alice @{os_user()}\n")
    git(repo, "add", "CODEOWNERS")
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "owners")
    root = tmp_path / "forge"
    root.mkdir()
    bare = bare_repo(root, "shop", repo)
    forge = Forge(request.param, root)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with git_http_server(root) as git_url, forge_server(forge) as api:
        yield World(repo, f"{git_url}/shop.git", bare, api, forge)


def fixed(ledger: Ledger, world: World, tmp_path: Path, policy: str, turns: list | None = None) -> dict:
    return run_scripted(ledger, world.repo, tmp_path, turns or [call("write_file", path="raindrops.py", content=FIX),
                                                                call("submit", summary="done")], policy)


