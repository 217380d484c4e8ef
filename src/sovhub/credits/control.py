"""Credits at admission (`sovhub_admission`): reserve the highest cost, post the real one at the end.

Who pays with credits: an organization holding at least one grant (open, spent or expired),
and every organization when ``access.credits_required`` is on. Web-assistant users without an
API key are not billed here (their per-person limits apply).

On the request's path: an in-memory look-up of the organization's grants and the model's price,
and ONE call to the live store (:mod:`.live`: a Redis script) that reserves the cost. Settling
is queued and sent in batches (one script for every request that ended within
``credits.settle_interval_s``); the journal reaches the database in batches too (:mod:`.journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from ..access.redis_conn import AccessRedis
from ..errors import BackendUnavailable, InsufficientQuota, PermissionDenied
from ..store.base import utcnow
from .amounts import format_credits
from .journal import JournalWriter
from .ledger import Ledger
from .live import LiveStore, MemoryLive, RedisLive
from .notice_mail import NoticeMail
from .notices import LOW_HEADER, LowBalanceWatch
from .prices import Price
from .state import CreditState, GrantFacts
from .tables import CreditAccount, CreditGrant

if TYPE_CHECKING:
    from ..admission import Admission
    from ..hub import Hub
    from ..mail import Mailer

__all__ = ["CREDITS_HEADER", "FREE_ENDPOINTS", "CreditControl", "Credits"]

log = logging.getLogger("sovhub.credits")

CREDITS_HEADER = "x-sovhub-credits-remaining"
# Free by design, whatever the model's price: counting a response's input tokens runs no model (the
# tokenizer only) and tells a client what a request would cost before it spends anything, so it
# passes credits by: no price asked for, no reservation, no ledger transfer, no Redis call. It is
# still admitted against the key's request limits and recorded as usage (0 tokens).
FREE_ENDPOINTS = frozenset({"responses.input_tokens"})
SHUTDOWN_S = 10.0
_NOTE = "credits"


@dataclass(slots=True)
class _Held:
    price: Price
    amount: int


class Credits:
    """The credits service of one process: state, live store, settlement queue, journal writer."""

    def __init__(self, hub: Hub, ledger: Ledger, mailer: Mailer | None = None) -> None:
        self.hub = hub
        self.ledger = ledger
        self.state = CreditState(hub)
        redis = hub.services.get(AccessRedis).client
        prefix = hub.settings.credits.redis_prefix
        self.live: LiveStore = RedisLive(redis, prefix) if redis is not None else MemoryLive()
        self.shared = redis is not None
        self.writer = JournalWriter(hub, ledger, self.live, cursor=f"redis:{prefix}" if self.shared else None)
        self._queue: list[tuple[str, int, str]] = []
        self._wake: asyncio.Event | None = None
        self._running = False
        self._loaded: set[int] = set()
        self.low = LowBalanceWatch(hub)
        #: Notices by e-mail, only when the operator configured SMTP ([mail]).
        self.notice_mail = NoticeMail(hub, mailer) if mailer is not None and mailer.configured else None

    # --- who pays ---------------------------------------------------------------------------

    def pays(self, org_id: int | None) -> bool:
        if org_id is None:
            return False
        return self.hub.settings.access.credits_required or bool(self.state.grants(org_id))

    def apply_url(self) -> str:
        configured = self.hub.settings.credits.apply_url
        if configured:
            return configured
        base = (self.hub.settings.access.public_url or "").rstrip("/")
        return f"{base}/hub/v1/programmes"

    # --- live balances ------------------------------------------------------------------------

    async def ensure_loaded(self, grants: list[GrantFacts]) -> None:
        """Give the live store the balance of grants it has not seen (from the ledger, once)."""
        new = [g.id for g in grants if g.id not in self._loaded]
        if not new:
            return
        balances = await asyncio.to_thread(self._ledger_available, new)
        await self.live.load(balances)
        self._loaded.update(new)

    def _ledger_available(self, grant_ids: list[int]) -> dict[int, int]:
        with self.hub.db.session() as s:
            rows = s.execute(
                select(CreditAccount.ref_id, CreditAccount.credits_posted - CreditAccount.debits_posted
                       - CreditAccount.debits_pending)
                .where(CreditAccount.kind == "grant", CreditAccount.ref_id.in_(grant_ids))
            ).all()
        return {int(g): int(a) for g, a in rows}

    async def balances(self, grants: list[GrantFacts]) -> dict[int, int]:
        await self.ensure_loaded(grants)
        return await self.live.balances([g.id for g in grants])

    async def check_low_balances(self) -> list[int]:
        """Notice grants that crossed under the low-balance threshold (once per crossing); their ids."""
        grants = self.state.open_grants()
        await self.ensure_loaded(grants)
        return await self.low.check(grants, self.live)

    # --- settlement queue -----------------------------------------------------------------------

    def queue_settlement(self, tid: str, cost: int, details: dict[str, Any]) -> None:
        self._queue.append((tid, cost, json.dumps(details, separators=(",", ":"))))
        if self._wake is not None:
            self._wake.set()

    async def flush_settlements(self) -> int:
        items, self._queue = self._queue, []
        if not items:
            return 0
        try:
            return await self.live.settle(items)
        except RedisError as exc:
            # Kept for the next try: the holds stay until then (or until they expire).
            log.error("could not settle %d requests with the live store: %s", len(items), exc)
            self._queue[:0] = items
            return 0

    async def settle_now_or_later(self) -> None:
        if not self._running:
            await self.flush_settlements()

    # --- background work --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.state.refreshing():
            await self.ensure_loaded(self.state.open_grants())
            self._wake = asyncio.Event()
            self._running = True
            tasks = [asyncio.create_task(self._settler(), name="sovhub-credits-settle"),
                     asyncio.create_task(self._housekeeping(), name="sovhub-credits-journal")]
            if self.notice_mail is not None:
                tasks.append(asyncio.create_task(self.notice_mail.run(), name="sovhub-credits-mail"))
            try:
                yield
            finally:
                self._running = False
                for task in tasks:
                    task.cancel()
                # A task stuck in a store call that ignores its cancellation must not hold the shutdown.
                await asyncio.wait(tasks, timeout=SHUTDOWN_S)
                # Bounded: shutdown must not hang on an unreachable store; what is not sent stays in
                # the journal (Redis) or, in memory, is lost with the process (docs/credits.md).
                try:
                    await asyncio.wait_for(self.flush_settlements(), SHUTDOWN_S)
                    await asyncio.wait_for(self.writer.drain(), SHUTDOWN_S)
                except (TimeoutError, RedisError, SQLAlchemyError) as exc:
                    log.error("credits: last settlements or journal not written at shutdown: %s", exc)

    async def _settler(self) -> None:
        assert self._wake is not None
        interval = self.hub.settings.credits.settle_interval_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let the requests ending together join one batch.
            await asyncio.sleep(interval)
            await self.flush_settlements()

    async def _housekeeping(self) -> None:
        interval = self.hub.settings.credits.journal_interval_s
        last_sweep = last_low = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ensure_loaded(self.state.open_grants())
                await self.live.expire()
                await self.writer.run_once()
                if time.monotonic() - last_low > 1:
                    last_low = time.monotonic()
                    await self.check_low_balances()
                if time.monotonic() - last_sweep > 10:
                    last_sweep = time.monotonic()
                    await self.sweep_expired_grants()
                    # Marks another replica set or cleared meanwhile.
                    await asyncio.to_thread(self.low.reload)
            except Exception as exc:  # noqa: BLE001 - the next round tries again; the journal keeps everything
                log.warning("credits housekeeping failed, will retry: %s", exc)

    async def sweep_expired_grants(self, now: datetime | None = None) -> int:
        """Return expired grants' remainders to their programmes; close those no hold can still touch."""
        now = now or utcnow()
        returned = 0
        ttl = self.hub.settings.credits.reservation_ttl_s
        closing: list[int] = []
        for grant in self.state.open_grants():
            if grant.expires_at is None or grant.expires_at > now:
                continue
            await self.ensure_loaded([grant])
            returned += await self.live.take(grant.id)
            if (now - grant.expires_at).total_seconds() > ttl + 60:
                closing.append(grant.id)
        if closing:
            await self.writer.drain()

            def close() -> None:
                with self.hub.db.session() as s:
                    s.execute(update(CreditGrant).where(CreditGrant.id.in_(closing)).values(closed_at=now))

            await asyncio.to_thread(close)
            self.state.load()
        return returned


class CreditControl:
    """The admission control: `admit` reserves or refuses with 429 insufficient_quota; `settle` posts."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def credits(self) -> Credits:
        return self.hub.services.get(Credits)

    def _price(self, admission: Admission) -> Price | None:
        return self.credits.state.book().at(admission.model, admission.admitted_at)

    def _discounted(self, admission: Admission, cost: int) -> int:
        """A batch line's cost less ``credits.batch_discount_percent`` (rounded in the payer's favour)."""
        discount = self.hub.settings.credits.batch_discount_percent
        if discount and admission.batch_id is not None:
            return cost - int(cost * discount // 100)
        return cost

    def _upper(self, admission: Admission, price: Price) -> int:
        if admission.endpoint in ("moderations", "pii"):
            upper = price.moderation_per_request
        elif admission.endpoint == "embeddings":
            upper = price.embedding(admission.reserved)
        else:
            upper = price.chat_upper(admission.reserved)
        return self._discounted(admission, upper)

    def _cost(self, admission: Admission, price: Price, tokens: int) -> int:
        if tokens <= 0:
            return 0
        if admission.endpoint in ("moderations", "pii"):
            cost = price.moderation_per_request
        elif admission.endpoint == "embeddings":
            cost = price.embedding(tokens)
        elif admission.prompt_tokens is not None and admission.completion_tokens is not None:
            cost = price.chat(admission.prompt_tokens, admission.completion_tokens)
        else:
            cost = price.chat_upper(tokens)
        return self._discounted(admission, cost)

    async def admit(self, admission: Admission) -> dict[str, str]:
        credits = self.credits
        principal = admission.principal
        if admission.endpoint in FREE_ENDPOINTS or not credits.pays(principal.org_id):
            return {}
        assert principal.org_id is not None
        settings = self.hub.settings.credits
        if admission.model in settings.free_models:
            return {}
        price = self._price(admission)
        if price is None:
            if settings.free_unpriced_models:
                return {}
            raise PermissionDenied(
                f"model {admission.model} has no price yet, and organization {principal.org_name} pays with "
                "credits; ask the hub's operator to price it (sovhub prices set)", code="model_not_priced",
                param="model")
        grants = [g for g in credits.state.grants(principal.org_id) if g.pays_for(admission.model,
                                                                                   admission.admitted_at)]
        amount = self._upper(admission, price)
        await credits.ensure_loaded(grants)
        facts: dict[str, Any] = {"org": principal.org_id, "key": principal.key_id, "rid": admission.request_id,
                                 "model": admission.model, "endpoint": admission.endpoint}
        if admission.batch_id is not None:
            facts["batch"] = admission.batch_id
        meta = json.dumps(facts, separators=(",", ":"))
        try:
            result = await credits.live.reserve(admission.ticket, [g.id for g in grants], amount,
                                                int(settings.reservation_ttl_s * 1000), meta)
        except RedisError as exc:
            log.error("credits store unavailable: %s", exc)
            raise BackendUnavailable("the credits ledger is unavailable; retry shortly",
                                     code="credits_unavailable", headers={"retry-after": "1"}) from exc
        if not result.ok:
            raise InsufficientQuota(self._refusal(admission, grants, amount, result.remaining),
                                    headers={CREDITS_HEADER: format_credits(result.remaining)})
        admission.notes[_NOTE] = _Held(price, amount)
        headers = {CREDITS_HEADER: format_credits(result.remaining)}
        low = [str(g.id) for g in grants if credits.low.is_low(g.id)]
        if low:
            headers[LOW_HEADER] = ",".join(low)
        return headers

    def _refusal(self, admission: Admission, grants: list[GrantFacts], amount: int, balance: int) -> str:
        org = admission.principal.org_name
        where = f"Apply for credits at {self.credits.apply_url()}."
        if not grants:
            return (f"You exceeded your current quota: organization {org} holds no open grant of credits that pays "
                    f"for model {admission.model} (balance 0 credits). {where}")
        names = ", ".join(f"grant {g.id} of programme {g.programme!r}" for g in grants)
        return (f"You exceeded your current quota: {names} for organization {org} has a balance of "
                f"{format_credits(balance)} credits, and this request may cost up to {format_credits(amount)} "
                f"credits (lower max_tokens to ask less). {where}")

    async def settle(self, admission: Admission, tokens: int) -> None:
        held = admission.notes.pop(_NOTE, None)
        if not isinstance(held, _Held):
            return
        cost = self._cost(admission, held.price, tokens)
        details: dict[str, Any] = {"price": held.price.id, "endpoint": admission.endpoint, "tokens": tokens}
        if admission.batch_id is not None:
            details.update(batch=admission.batch_id,
                           discount_percent=self.hub.settings.credits.batch_discount_percent)
        if admission.prompt_tokens is not None:
            details.update(prompt=admission.prompt_tokens, completion=admission.completion_tokens)
        self.credits.queue_settlement(admission.ticket, cost, details)
        await self.credits.settle_now_or_later()

    async def abandon(self, tickets: list[str]) -> None:
        """Void these reservations (a batch line's earlier attempt, its replica gone): nothing is charged for
        them, and one already settled or expired is left as it is."""
        for ticket in tickets:
            self.credits.queue_settlement(ticket, 0, {"voided": "batch line taken over by another replica"})
        await self.credits.settle_now_or_later()
