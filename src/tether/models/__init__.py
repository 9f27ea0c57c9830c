"""Model providers and prices. `make_provider("scheme:detail")` builds one from a spec."""

from __future__ import annotations

from pathlib import Path

from tether.models.base import (
    Message,
    ModelError,
    ModelResponse,
    Provider,
    ToolCall,
    ToolSpec,
    TransientModelError,
    Usage,
)

SCHEMES = ("scripted", "openai", "anthropic", "local")


def check_spec(spec: str) -> tuple[str, str]:
    """(scheme, detail) of a model spec, or ModelError saying what a spec looks like."""
    scheme, _, detail = spec.partition(":")
    if scheme not in SCHEMES or not detail:
        raise ModelError(f"model spec {spec!r}: expected one of {', '.join(s + ':...' for s in SCHEMES)}")
    return scheme, detail


def make_provider(spec: str, base_url: str | None = None, text_actions: bool = False) -> Provider:
    """`text_actions`: an openai: model answers in the text action format (local models always do)."""
    scheme, detail = check_spec(spec)
    if scheme == "scripted":
        from tether.models.scripted import ScriptedProvider

        return ScriptedProvider(Path(detail))
    if scheme == "local":
        from tether.models.local import LocalProvider

        return LocalProvider(detail)
    if scheme == "openai":
        from tether.models.openai_provider import OpenAIProvider

        return OpenAIProvider(detail, base_url=base_url, text_actions=text_actions)
    from tether.models.anthropic_provider import AnthropicProvider

    return AnthropicProvider(detail, base_url=base_url)


__all__ = [
    "Message",
    "ModelError",
    "ModelResponse",
    "Provider",
    "ToolCall",
    "ToolSpec",
    "TransientModelError",
    "Usage",
    "check_spec",
    "make_provider",
]
