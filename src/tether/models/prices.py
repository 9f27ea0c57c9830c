"""Cost of a model call in USD from genai-prices' bundled table (no network)."""

from __future__ import annotations

from functools import lru_cache

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from tether.models.base import Usage


@lru_cache(maxsize=256)
def _known(model: str, provider: str | None) -> bool:
    try:
        calc_price(PriceUsage(input_tokens=1, output_tokens=1), model_ref=model, provider_id=provider)
    except LookupError:
        return False
    return True


def price_usd(model: str, provider: str | None, usage: Usage) -> float | None:
    """USD for this usage, or None when the model is not in the price table."""
    if not _known(model, provider):
        return None
    calculation = calc_price(
        PriceUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
        model_ref=model, provider_id=provider,
    )
    return float(calculation.total_price)
