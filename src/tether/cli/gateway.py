"""Commands for the model gateway: serve it, issue and revoke the tokens agents use as their key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, err, fail, open_ledger, out
from tether.policy import load_policy

gateway_app = typer.Typer(help="The model gateway for Claude Code, Codex and other agents. Example: tether gateway "
                          "token --user alice --upstream anthropic:claude-sonnet-4-5", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")


@gateway_app.command("serve")
def serve(host: Annotated[str, typer.Option(help="Listen on this address (loopback by default).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535, help="Listen on this port.")] = 8787,
          repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Serve the Anthropic Messages, OpenAI Responses and Chat Completions APIs: each request's
    token names its run, passes its budgets, the developer's daily USD and the fleet's kill switch,
    goes to the upstream the token was issued for, and is recorded.

    Example: tether gateway serve --db postgresql://tether@db/tether --port 8787
    """
    import uvicorn

    from tether.gateway.app import make_app
    from tether.gateway.core import Gateway

    with open_ledger(db, repo) as ledger:
        err.print(f"gateway on http://{host}:{port} (Anthropic: ANTHROPIC_BASE_URL=http://{host}:{port}; "
                  f"OpenAI: base URL http://{host}:{port}/v1); the token is the API key")
        uvicorn.run(make_app(Gateway(ledger)), host=host, port=port, log_level="warning")


@gateway_app.command("token")
def token(user: Annotated[str, typer.Option(help="Who the token is for (shown in refusals and records).")],
          upstream: Annotated[str, typer.Option(help="The model behind the gateway (openai:..., anthropic:..., "
                                                     "local:..., scripted:FILE).")],
          policy: Annotated[Path | None, typer.Option(help="Budgets and brakes for the token's run (a "
                                                           "tether.toml).")] = None,
          max_usd_per_day: Annotated[float | None, typer.Option(min=0, help="The user's daily USD.")] = None,
          repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Issue a token: the only key an agent needs. Its requests are recorded in a run of their own.

    Example: tether gateway token --user alice --upstream openai:gpt-4o-mini --max-usd-per-day 5
    """
    from tether.gateway.core import issue_token
    from tether.models import check_spec

    check_spec(upstream)  # refuse a malformed upstream before anything is stored (its key is the gateway's)
    loaded = load_policy(policy) if policy else None
    with open_ledger(db, repo) as ledger:
        issued, run_id = issue_token(ledger, user, upstream, loaded, max_usd_per_day)
    if as_json:
        out.print_json(data={"token": issued, "run_id": run_id, "user": user})
    else:
        out.print(issued, highlight=False)
        err.print(f"run {run_id} records {user}'s requests (tether show {run_id} --events)")


@gateway_app.command("revoke")
def revoke(issued: Annotated[str, typer.Argument(metavar="TOKEN", help="The token to revoke.")],
           repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Revoke a token; its run and records stay.

    Example: tether gateway revoke tg-3f9...
    """
    from tether.gateway.core import revoke_token

    with open_ledger(db, repo) as ledger:
        if not revoke_token(ledger, issued):
            raise fail("no such token")
    err.print("revoked")


@gateway_app.command("hooks")
def hooks(agent: Annotated[str, typer.Argument(help="The agent: claude-code or codex.")],
          http: Annotated[str | None, typer.Option(
              "--http", metavar="GATEWAY_URL", help="Claude Code only: hooks the gateway at this URL answers over "
              "HTTP, in its own process (faster: no process per tool call).")] = None) -> None:
    """Print the agent's settings that send each of its tool calls through the run's guard (the
    hook reads the gateway's URL and the token from the agent's environment): Claude Code's
    settings JSON, or the [hooks] tables of a Codex config.toml (trust them once with /hooks).

    Example: tether gateway hooks claude-code --http http://127.0.0.1:8787 > hooks.json && claude --settings hooks.json
    """
    import json
    import sys

    from tether.gateway.agent_tools import claude_code_http_settings, claude_code_settings, codex_hooks

    variables = ("the hook finds the gateway in TETHER_GATEWAY_URL and its token in TETHER_GATEWAY_TOKEN "
                 "(Claude Code: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY serve as well); set them in the agent's "
                 "environment")
    if http is not None and agent != "claude-code":
        raise fail(f"--http: only Claude Code takes hooks over HTTP; {agent}'s hooks are commands")
    if http is not None:
        if not http.startswith(("http://", "https://")):
            raise fail(f"--http: {http!r} is not a URL (for example http://127.0.0.1:8787)")
        print(json.dumps(claude_code_http_settings(http), indent=2))
        err.print("note: set TETHER_GATEWAY_TOKEN to the gateway's token in the agent's environment (Claude Code "
                  "sends no ANTHROPIC_API_KEY in a hook's header); a call the gateway cannot judge is blocked",
                  soft_wrap=True)
    elif agent == "claude-code":
        print(json.dumps(claude_code_settings(sys.executable), indent=2))
        err.print(f"note: {variables}", soft_wrap=True)
    elif agent == "codex":
        print(codex_hooks(sys.executable), end="")
        err.print("note: Codex runs no hook it has not been told to trust: start Codex and trust these once with "
                  "/hooks (until then every tool call goes unjudged); " + variables, soft_wrap=True)
    else:
        raise fail(f"no hooks for {agent!r}: Tether speaks the hooks of claude-code and codex")


@app.command("hook")
def hook(agent: Annotated[str, typer.Argument(help="The agent whose hook event is on stdin: claude-code or codex.")],
         phase: Annotated[str | None, typer.Argument(help="pre or post (default: the event's hook_event_name).")]
         = None) -> None:
    """Judge one tool call of Claude Code or Codex: the PreToolUse or PostToolUse event on stdin goes
    to the gateway (TETHER_GATEWAY_URL and TETHER_GATEWAY_TOKEN, or ANTHROPIC_BASE_URL and
    ANTHROPIC_API_KEY), the decision comes back in the agent's hook protocol. Fails closed (exit 2).
    `tether gateway hooks` prints settings that run the same hook with a bare Python, which decides
    in 25 ms where this command takes about a second (it loads Tether's command line first).

    Example: tether hook claude-code pre < pre-tool-use.json
    """
    from tether.gateway.hook import main

    raise typer.Exit(main(["tether hook", agent, *([phase] if phase else [])]))
