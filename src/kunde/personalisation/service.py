"""Recommendations: training from the interaction store, serving, and model swaps.

One `RecommendationService` per process holds the model set being served. Training writes
a new version with `ModelStore.save` (atomic pointer swap); every process picks it up at
its next `reload()` (startup and the scheduled refresh). A missing or damaged version keeps
the previous one in service, or popularity computed from the database, and says so in
`status()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from kunde.kernel import Kernel
from kunde.personalisation.errors import BadContext, TrainingFailed
from kunde.personalisation.model_store import CorruptModel, ModelStore, popularity_only
from kunde.personalisation.models.data import Interactions, TrainingDataError, build
from kunde.personalisation.models.recommend import History, ModelSet, recommend
from kunde.personalisation.models.rules import Rules
from kunde.personalisation.models.train import TrainConfig, train_all
from kunde.personalisation.ports import ConsentPort, consent_port, stock_port
from kunde.personalisation.tables import (
    erased,
    interactions,
    items,
    model_versions,
    segment_members,
)
from kunde.store.quick import Query, QuickSession

log = logging.getLogger("kunde.personalisation")
CACHE_SIZE = 20_000
CACHE_SECONDS = 30.0
RELOAD_CHECK_SECONDS = 10.0
ITEM_RULES_SECONDS = 10.0
HISTORY_LIMIT = 200
EPOCH = datetime(2000, 1, 1).timestamp()


def day_of(ts: datetime) -> float:
    return (ts.timestamp() - EPOCH) / 86400.0


def _personal_inputs_query() -> Query:
    """A customer's last `HISTORY_LIMIT` interactions (segment NULL) and one row with the
    first segment (SKU NULL; the segment NULL when there is none), in one statement."""
    cid = sa.bindparam("cid", type_=sa.String())
    recent = (sa.select(interactions.c.sku, interactions.c.kind, interactions.c.occurred_at,
                        sa.type_coerce(sa.null(), sa.String).label("segment"))
              .where(interactions.c.customer_id == cid)
              .order_by(interactions.c.occurred_at.desc())
              # literal LIMIT/OFFSET: every bound value of a quick query is named
              .limit(sa.literal_column(str(HISTORY_LIMIT), sa.Integer))
              .offset(sa.literal_column("0", sa.Integer))
              .subquery())
    seg = (sa.select(sa.type_coerce(sa.null(), sa.String).label("sku"),
                     sa.type_coerce(sa.null(), sa.String).label("kind"),
                     sa.type_coerce(sa.null(), interactions.c.occurred_at.type)
                     .label("occurred_at"),
                     sa.func.min(segment_members.c.segment).label("segment"))
           .where(segment_members.c.customer_id == cid))
    return Query(sa.select(sa.union_all(sa.select(recent), seg).subquery()))


PERSONAL_INPUTS = _personal_inputs_query()


class RecommendationService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.store = ModelStore(kernel.settings.data_path / "models" / "personalisation")
        self.models: ModelSet | None = None
        self.state: dict[str, Any] = {"status": "not_loaded", "version": None, "problem": None}
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, list[dict[str, Any]]]] = (
            OrderedDict())
        self._by_customer: dict[str, set[tuple[Any, ...]]] = {}
        # customer -> (cached at, (skus, kinds, POSIX times, segment) or None: not personal)
        self._people: OrderedDict[str, tuple[float, tuple[Any, ...] | None]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._checked = 0.0
        self._items_cache: tuple[float, dict[str, float], frozenset[str]] = (
            -ITEM_RULES_SECONDS, {}, frozenset())
        self._stock = stock_port(kernel)
        self._items_refresh: asyncio.Task[tuple[dict[str, float], frozenset[str]]] | None = None
        self._items_generation = 0
        self._rules_memo: tuple[ModelSet, dict[str, float], frozenset[str], Rules] | None = None
        self._consent: ConsentPort | None = None

    # -- model lifecycle ----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What is served: ``trained`` (healthy), ``previous``/``popularity`` (degraded)."""
        return dict(self.state)

    async def reload(self) -> dict[str, Any]:
        """Serve the CURRENT version if it changed; keep what is served if it cannot load."""
        async with self._lock:
            wanted = await asyncio.to_thread(self.store.current)
            if self.models is not None and wanted == self.models.version and \
                    self.state["status"] == "trained":
                return self.status()
            problem = None
            for version in [v for v in [wanted] if v] + (await asyncio.to_thread(
                    self.store.versions)):
                if self.models is not None and version == self.models.version:
                    break
                try:
                    ms, _ = await asyncio.to_thread(self.store.load, version)
                except CorruptModel as exc:
                    problem = problem or str(exc)
                    log.error("personalisation model %s cannot be served: %s", version, exc)
                    continue
                self._swap(ms, "trained" if version == wanted else "previous", problem)
                return self.status()
            if self.models is not None and self.models.version != "popularity":
                self.state.update(status="previous", problem=problem or "no newer version")
                if problem is None and self.models.version == wanted:
                    self.state.update(status="trained", problem=None)
                return self.status()
            self._swap(await self._popularity_fallback(), "popularity",
                       problem or "no trained model yet: run `kunde train`")
            return self.status()

    async def ensure_fresh(self) -> None:
        """Load a model on first use and look for a newer version every few seconds, so
        every process picks up what `kunde train` or the scheduled job wrote."""
        now = time.monotonic()
        if self.models is None or now - self._checked > RELOAD_CHECK_SECONDS:
            self._checked = now
            current = await asyncio.to_thread(self.store.current)
            if self.models is None or current != self.models.version:
                await self.reload()

    def _swap(self, ms: ModelSet, status: str, problem: str | None) -> None:
        self.models = ms  # one reference assignment: requests see the old or the new set
        self.state = {"status": status, "version": ms.version, "problem": problem,
                      "items": int(ms.items.size)}
        self._cache.clear()
        self._by_customer.clear()
        self._people.clear()

    async def _popularity_fallback(self) -> ModelSet:
        q = (sa.select(interactions.c.sku, sa.func.max(interactions.c.category),
                       sa.func.count()).group_by(interactions.c.sku))
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return popularity_only("popularity", [r[0] for r in rows], [r[1] or "" for r in rows],
                               [float(r[2]) for r in rows])

    # -- training -------------------------------------------------------------------
    async def training_data(self) -> tuple[Interactions, dict[str, NDArray[np.bool_]]]:
        """Every stored interaction except those of erased customers, plus segments."""
        q = (sa.select(interactions.c.customer_id, interactions.c.sku, interactions.c.kind,
                       interactions.c.occurred_at, interactions.c.basket,
                       interactions.c.category)
             .where(interactions.c.customer_id.not_in(sa.select(erased.c.customer_id))))
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(q)).all()
            members = (await conn.execute(sa.select(segment_members))).all()
        data = build([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                     [day_of(r[3]) for r in rows], [r[4] for r in rows], [r[5] for r in rows])
        index = {str(u): i for i, u in enumerate(data.users)}
        segments: dict[str, NDArray[np.bool_]] = {}
        for cid, seg in members:
            if cid in index:
                segments.setdefault(seg, np.zeros(data.n_users, bool))[index[cid]] = True
        return data, segments

    async def train(self, progress: Callable[[str], None] | None = None,
                    config: TrainConfig = TrainConfig()) -> dict[str, Any]:
        """Train every model, write a new version and serve it. Raises `TrainingFailed`."""
        data, segments = await self.training_data()
        now = self.kernel.clock.now()
        started = time.perf_counter()
        try:
            arrays, timings = await asyncio.to_thread(
                train_all, data, now_day=day_of(now), segments=segments, config=config,
                progress=progress)
        except TrainingDataError as exc:
            raise TrainingFailed(str(exc)) from exc
        version = self.store.new_version(now)
        summary = {"interactions": int(data.user.size), "customers": data.n_users,
                   "products": data.n_items, "segments": len(segments),
                   "seconds": {k: round(v, 3) for k, v in timings.items()},
                   "total_seconds": round(time.perf_counter() - started, 3)}
        await asyncio.to_thread(self.store.save, version, arrays, summary)
        async with self.kernel.db.transaction() as uow:
            await uow.execute(model_versions.insert().values(
                version=version, created_at=now, summary=summary))
        await self.reload()
        return {"version": version, **summary}

    # -- serving --------------------------------------------------------------------
    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop cached responses and personal inputs of these customers (new interactions,
        consent changes, erasure)."""
        for cid in customer_ids:
            self._people.pop(cid, None)
            for key in self._by_customer.pop(cid, set()):
                self._cache.pop(key, None)

    async def _personal_state(self, customer_id: str | None
                              ) -> tuple[History | None, str | None, float]:
        """The customer's history and first segment when they granted ``personalisation``
        consent, else ``(None, None)``.

        Kept per customer for ``CACHE_SECONDS`` under the same rules as cached responses
        (dropped by `forget`), so further contexts of the same visit need no database
        round trip. Ages are computed at each request. The third value is when the inputs
        were read: a response built from them is cached from then, so a consent withdrawal
        is honoured within ``CACHE_SECONDS`` in every process, as without this cache."""
        now = time.monotonic()
        if not customer_id:
            return None, None, now
        hit = self._people.get(customer_id)
        if hit is None or now - hit[0] >= CACHE_SECONDS:
            inputs = None
            if self._consent is None:
                self._consent = consent_port(self.kernel)
            async with self.kernel.db.quick.session() as q:  # one snapshot, one connection
                if await self._consent.is_allowed_in(q, customer_id, "personalisation"):
                    inputs = await self._personal_inputs(q, customer_id)
            hit = (now, inputs)
            self._people[customer_id] = hit
            self._people.move_to_end(customer_id)
            while len(self._people) > CACHE_SIZE:
                self._people.popitem(last=False)
        if hit[1] is None:
            return None, None, hit[0]
        skus, kinds, stamps, segment = hit[1]
        at = self.kernel.clock.now().timestamp()
        return History(skus, kinds, tuple((at - t) / 86400.0 for t in stamps)), segment, hit[0]

    async def _personal_inputs(self, q: QuickSession, customer_id: str) -> tuple[
            tuple[str, ...], tuple[str, ...], tuple[float, ...], str | None]:
        """The customer's own recent interactions (SKU, kind, POSIX time) and first segment,
        in one statement (`PERSONAL_INPUTS`)."""
        rows = await q.fetch(PERSONAL_INPUTS, cid=customer_id)
        history = [r for r in rows if r["sku"] is not None]
        history.sort(key=lambda r: r["occurred_at"], reverse=True)
        segment = next((str(r["segment"]) for r in rows if r["sku"] is None
                        and r["segment"] is not None), None)
        return (tuple(r["sku"] for r in history), tuple(r["kind"] for r in history),
                tuple(r["occurred_at"].timestamp() for r in history), segment)

    async def _item_rules(self) -> tuple[dict[str, float], frozenset[str]]:
        """Boosts and unavailable products (catalogue-wide, not personal): cached briefly.

        Unavailable means ``p13n_items.available`` is false or commerce's catalog cannot
        sell it (inactive, no free unit). When that set changes, cached responses go."""
        at, boosts, gone = self._items_cache
        if time.monotonic() - at < ITEM_RULES_SECONDS:
            return boosts, gone
        running = self._items_refresh
        if running is None or running.done():
            running = self._items_refresh = asyncio.create_task(self._load_item_rules())
        if at > 0:
            # Expired by age: serve what we have while one refresh runs beside the requests.
            # (Awaiting it here made every request of those milliseconds wait, and start
            # its own catalogue-wide read: the tail of the latency.)
            return boosts, gone
        return await asyncio.shield(running)  # never read, or a change is known: wait

    async def _load_item_rules(self) -> tuple[dict[str, float], frozenset[str]]:
        generation = self._items_generation
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(items.c.sku, items.c.boost)
                                       .where(items.c.boost != 1.0))).all()
        boosts = {r[0]: float(r[1]) for r in rows}
        new_gone = frozenset(await self._stock.unavailable(None))
        if generation != self._items_generation:
            return boosts, new_gone  # a change became known meanwhile: a newer read stores
        if new_gone != self._items_cache[2]:
            self._cache.clear()
            self._by_customer.clear()
        self._items_cache = (time.monotonic(), boosts, new_gone)
        return boosts, new_gone

    def refresh_item_rules(self) -> None:
        """Read boosts and stock again at the next request (a catalogue change is known)."""
        self._items_cache = (-ITEM_RULES_SECONDS, *self._items_cache[1:])
        self._items_refresh = None
        self._items_generation += 1

    def _rules(self, ms: ModelSet, categories: list[str], boosts: dict[str, float],
               gone: frozenset[str]) -> Rules:
        """Rules in the model's item indices; the index mapping is kept while the model
        version and the catalogue-wide boosts and stock stay the same."""
        memo = self._rules_memo
        if memo is None or memo[0] is not ms or memo[1] is not boosts or memo[2] is not gone:
            exclude = frozenset(ms.index[s] for s in gone if s in ms.index)
            boost = {ms.index[s]: b for s, b in boosts.items() if s in ms.index}
            memo = self._rules_memo = (ms, boosts, gone, Rules(exclude=exclude, boost=boost))
        base = memo[3]
        if not categories:
            return base
        return Rules(exclude=base.exclude, categories=frozenset(categories), boost=base.boost)

    async def recommend(self, customer_id: str | None, context: str, limit: int = 10, *,
                        categories: list[str] | None = None, cart: list[str] | None = None
                        ) -> dict[str, Any]:
        """Recommendations with a reason per item; never an error for unknown ids.

        Personal signals (history, session, segment, bought-exclusion) are used only for a
        known customer who granted ``personalisation`` consent; ``personal`` says which.
        """
        if not (context in ("home", "cart") or context.startswith("product:")):
            raise BadContext("context must be home, cart or product:<SKU>")
        limit = max(1, min(limit, 100))
        await self.ensure_fresh()
        ms = self.models
        assert ms is not None
        boosts, gone = await self._item_rules()  # a change of stock clears the cache
        key = (customer_id, context, limit, tuple(categories or ()), tuple(cart or ()),
               ms.version)
        hit = self._cache.get(key)
        loop_now = time.monotonic()
        personal = False
        if hit and loop_now - hit[0] < CACHE_SECONDS:
            picks = hit[1]
            personal = bool(picks and picks[0].get("_personal"))
        else:
            history, segment, read_at = await self._personal_state(customer_id)
            personal = history is not None
            cart_skus = tuple(cart or ())
            if context == "cart" and not cart_skus and history is not None:
                cart_skus = _open_cart(history)
            rules = self._rules(ms, categories or [], boosts, gone)
            result = recommend(ms, context, limit + 10, history=history, cart=cart_skus,
                               rules=rules, segment=segment)
            result = result[:limit]
            picks = [{"sku": p.sku, "reason": p.reason, "detail": p.detail,
                      "score": round(p.score, 5), "_personal": personal} for p in result]
            self._remember(key, customer_id, picks, read_at)
        return {"customer": customer_id, "context": context, "personal": personal,
                "model_version": ms.version, "model_status": self.state["status"],
                "items": [{k: v for k, v in p.items() if k != "_personal"} for p in picks]}

    def _remember(self, key: tuple[Any, ...], customer_id: str | None,
                  picks: list[dict[str, Any]], at: float) -> None:
        self._cache[key] = (at, picks)
        if customer_id:
            self._by_customer.setdefault(customer_id, set()).add(key)
        while len(self._cache) > CACHE_SIZE:
            old, _ = self._cache.popitem(last=False)
            if old[0]:
                self._by_customer.get(old[0], set()).discard(old)


def _open_cart(history: History) -> tuple[str, ...]:
    """Cart adds since the customer's last purchase (the cart as far as events tell)."""
    out = []
    for sku, kind in zip(history.skus, history.kinds, strict=True):
        if kind == "purchase":
            break
        if kind == "cart":
            out.append(sku)
    return tuple(dict.fromkeys(out))
