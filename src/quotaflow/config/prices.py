"""Model prices from the maintained ``genai-prices`` table (pydantic's, tracking the
providers' price pages), a few models it does not list, and a stand-in for the rest.

``genai-prices`` is imported the first time a price is read — by the background thread
``quotaflow serve`` starts once it listens (:func:`warm_in_background`), or by whatever
needs a price first — never when the server's modules are imported and never per request:
each ``(provider, model)`` is looked up once and kept, misses included.

A configuration's own prices (``providers[].models[].input/output/cached``) win over both
tables; a model neither knows gets ``settings.unpriced``'s stand-in, flagged as estimated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from quotaflow.clock import Clock, SystemClock
from quotaflow.engine.pricing import LazyPrice, Price, PriceLike, Tier

if TYPE_CHECKING:
    from quotaflow.engine.catalog import ModelInfo, Provider

# Catalog models the library does not list, USD per million tokens in / out, from the
# providers' own price pages (read 2026-11):
FALLBACK: dict[tuple[str, str], Price] = {
    # https://www.ai21.com/pricing — Jamba Mini $0.20 / $0.40, Jamba Large $2 / $8
    ("ai21", "jamba-mini"): Price(0.2, 0.4),
    ("ai21", "jamba-large"): Price(2.0, 8.0),
    # https://platform.moonshot.ai/docs/pricing/chat — kimi-k1.5 (the library lists kimi-k2*)
    ("kimi", "kimi-k1.5"): Price(0.6, 2.5),
}
# Our provider names where the library's differ.
LIBRARY_PROVIDER = {"gemini": "google", "kimi": "moonshotai"}
# Hugging Face's router serves a model through one of its inference providers, at that
# provider's price, and the library lists each as ``huggingface_<provider>``: the highest
# of them is charged, so a cost limit never counts less than was spent.
ROUTED_BY = {"huggingface": "huggingface_"}
_MAX_REMEMBERED = 4096  # models remembered (a client can name any model: the cache is bounded)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, Decimal | int | float) else 0.0


def _base(value: Any) -> Any:
    return getattr(value, "base", value)


def price_of(model_price: Any) -> Price | None:
    """Our :class:`Price` from one of the library's ``ModelPrice`` (tiers kept); None when it
    has neither an input nor an output price per token."""
    fields = (model_price.input_mtok, model_price.output_mtok, model_price.cache_read_mtok)
    if fields[0] is None and fields[1] is None:
        return None
    starts = sorted({t.start for f in fields for t in getattr(f, "tiers", ())})

    def at(value: Any, above: int | None) -> float | None:
        if value is None:
            return None
        rate = _base(value)
        for tier in getattr(value, "tiers", ()):
            if above is not None and tier.start <= above:
                rate = tier.price
        return _float(rate)

    def rates(above: int | None) -> tuple[float, float, float | None]:
        inp, out, cached = (at(f, above) for f in fields)
        return inp or 0.0, out or 0.0, cached

    inp, out, cached = rates(None)
    tiers = tuple(Tier(s, *rates(s)) for s in starts)
    return Price(inp, out, cached, tiers=tiers)


class PriceBook:
    """``(provider, model)`` → its known price (or None), looked up once, bounded."""

    def __init__(
        self, fallback: dict[tuple[str, str], Price] | None = None, clock: Clock | None = None
    ) -> None:
        self.fallback = FALLBACK if fallback is None else fallback
        self.clock = clock or SystemClock()  # prices in force now (the table dates changes)
        self._lock = threading.Lock()
        self._known: OrderedDict[tuple[str, str], Price | None] = OrderedDict()
        self._snapshot: Any = None
        self._dearest: Price | None = None

    def snapshot(self) -> Any:
        """The library's price data (imported on first use)."""
        if self._snapshot is None:
            from genai_prices import data_snapshot

            self._snapshot = data_snapshot.get_snapshot()
        return self._snapshot

    def known(self, provider: str, model: str, base_url: str | None = None) -> Price | None:
        """The price the library (else :data:`FALLBACK`) gives ``model`` at ``provider``
        (a preset's name; another name is matched by its ``base_url``)."""
        key = (provider, model)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
            price = self._lookup(provider, model, base_url)
            if price is None:
                price = self.fallback.get(key)
            self._known[key] = price
            if len(self._known) > _MAX_REMEMBERED:
                self._known.popitem(last=False)
            return price

    def _lookup(self, provider: str, model: str, base_url: str | None) -> Price | None:
        snap = self.snapshot()
        now = datetime.fromtimestamp(self.clock.now(), tz=UTC)
        prefix = ROUTED_BY.get(provider)
        if prefix is not None:
            found = [
                p
                for lp in snap.providers
                if lp.id.startswith(prefix)
                and (m := lp.find_model(model.lower())) is not None
                and (p := price_of(m.get_prices(now))) is not None
            ]
            if not found:
                return None
            return Price(max(p.input for p in found), max(p.output for p in found))
        try:
            if provider in LIBRARY_PROVIDER or _has_provider(snap, provider):
                pid = LIBRARY_PROVIDER.get(provider, provider)
                _, info = snap.find_provider_model(model, None, pid, None)
            elif base_url:
                _, info = snap.find_provider_model(model, None, None, base_url)
            else:
                return None
        except LookupError:
            return None
        return price_of(info.get_prices(now))

    def dearest(self) -> Price:
        """The highest input and the highest output price of every model the tables list
        (computed once): the stand-in of a model whose provider has no known price at all."""
        with self._lock:
            if self._dearest is None:
                now = datetime.fromtimestamp(self.clock.now(), tz=UTC)
                prices = [
                    p
                    for lp in self.snapshot().providers
                    for m in lp.models
                    if (p := price_of(m.get_prices(now))) is not None
                ]
                prices += self.fallback.values()
                self._dearest = Price(
                    max((p.input for p in prices), default=0.0),
                    max((p.output for p in prices), default=0.0),
                )
            return self._dearest

    def warm(self, pairs: Iterable[tuple[str, str, str | None]]) -> None:
        for provider, model, base_url in pairs:
            self.known(provider, model, base_url)


def _has_provider(snap: Any, name: str) -> bool:
    return any(p.id == name for p in snap.providers)


BOOK = PriceBook()


def stand_in(known: Iterable[Price], policy: str, book: PriceBook | None = None) -> Price:
    """The price of a model with no known price (flagged ``estimated``): with ``highest``,
    the highest input and output prices among ``known`` (its provider's priced models), or,
    when its provider has none, of every model the tables list — never $0, or a cost limit
    on that provider would count nothing."""
    if policy != "highest":
        return Price(estimated=True)
    known = list(known)
    if not any(p.input or p.output for p in known):
        known = [(book or BOOK).dearest()]
    return Price(
        max(p.input for p in known),
        max(p.output for p in known),
        estimated=True,
    )


Override = tuple[float | None, float | None, float | None]  # input, output, cached; None: not set


def known_among(
    provider: str, base_url: str | None, models: dict[str, Override], book: PriceBook = BOOK
) -> list[Price]:
    """The known prices of ``models`` at ``provider`` (read from the tables directly, so a
    model's stand-in never waits on its own price)."""
    out = []
    for name, (inp, out_, cached) in models.items():
        if inp is not None and out_ is not None:
            out.append(Price(inp, out_, cached))
        elif (known := book.known(provider, name, base_url)) is not None:
            out.append(known)
    return out


def provider_known(provider: Provider) -> list[Price]:
    """The known prices of ``provider``'s catalog models."""
    out = []
    for m in provider.models.values():
        if not m.price.estimated:
            out.append(m.price if isinstance(m.price, Price) else m.price.price)
    return out


def model_price(
    provider: str,
    model: str,
    *,
    base_url: str | None,
    policy: str,
    siblings: Callable[[], Iterable[Price]],
    override: Override = (None, None, None),
    book: PriceBook = BOOK,
) -> PriceLike:
    """``model``'s price at ``provider``: the configuration's ``override`` (input, output,
    cached) wins field by field over the library's price, which is looked up when first
    read; a model no table knows gets ``policy``'s stand-in among ``siblings``."""
    inp, out, cached = override
    if inp is not None and out is not None:
        return Price(inp, out, cached)

    def lookup() -> Price:
        known = book.known(provider, model, base_url)
        base = known if known is not None else stand_in(siblings(), policy, book)
        if inp is None and out is None and cached is None:
            return base
        return Price(
            base.input if inp is None else inp,
            base.output if out is None else out,
            base.cached if cached is None else cached,
            estimated=base.estimated,
        )

    return LazyPrice(lookup)


def warm(providers: Iterable[Provider], book: PriceBook = BOOK) -> list[tuple[str, str, Price]]:
    """Read every catalog model's price now (the library is imported on the way); returns
    the models with no known price and the stand-in each is booked at."""
    unpriced = []
    for p in providers:
        for m in p.models.values():
            if m.price.estimated:
                price = m.price if isinstance(m.price, Price) else m.price.price
                unpriced.append((p.name, m.name, price))
    return unpriced


def warm_in_background(
    providers: Iterable[Provider], then: Callable[[list[tuple[str, str, Price]]], None]
) -> threading.Thread:
    """:func:`warm` in a daemon thread, then ``then(unpriced)`` there."""
    providers = list(providers)

    def run() -> None:
        then(warm(providers))

    thread = threading.Thread(target=run, name="quotaflow-prices", daemon=True)
    thread.start()
    return thread


def priced_model(provider: Provider, name: str, policy: str) -> ModelInfo:
    """``name`` at ``provider``: its catalog entry, else neutral defaults at the price the
    table gives it, or ``policy``'s stand-in — never a silent $0."""
    info = provider.models.get(name)
    if info is not None:
        return info
    price = model_price(
        provider.prices_as or provider.name,
        name,
        base_url=provider.base_url,
        policy=policy,
        siblings=lambda: provider_known(provider),
    )
    return replace(provider.model(name), price=price)


def stand_in_note(price: Price, policy: str) -> str:
    """How a model with no known price is booked, in words (start-up, log, dashboard)."""
    return (
        f"booked at ${price.input:g} / ${price.output:g} per million tokens in / out, "
        f"flagged as estimated (settings.unpriced: {policy})"
    )
