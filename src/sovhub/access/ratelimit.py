"""Exact rate limits and token budgets: one algorithm, two stores (Redis for replicas, memory for one).

A *limit* is (scope, field, value): ``key:12`` / ``rpm`` / 10. Fields:

* ``rpm``, ``rpd`` - requests in any sliding 60 s / 24 h window (a log of admission times,
  so "10 per minute" means never an 11th within 60 s, with no edge bursts of fixed windows);
* ``tpm``, ``tpd`` - tokens in a sliding window (a log of (time, tokens) and a running sum);
  a request that may use up to R tokens (its *reservation*: ``max_tokens x n`` and its prompt)
  is admitted only while the window's tokens plus R stay within the limit, and R is entered
  in the log at admission; settling replaces R by the tokens really used, at the same time
  stamp. So concurrent requests can never together pass the limit;
* ``budget_day``, ``budget_week``, ``budget_month`` - tokens per calendar period (UTC), a
  counter reset when the period turns, as budgets are planned; reservations as above.

With Redis, admission is ONE round trip: a Lua script checks every limit of the request and
records it (and its reservation) only if all pass, atomically, with Redis's clock, so N replicas
admit exactly what one would. Settling (correcting the reservation) is a second script.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "FIELDS", "REQUEST_FIELDS", "Check", "Limit", "MemoryLimiter", "RedisLimiter", "Reservation", "period_bounds",
]

REQUEST_FIELDS = {"rpm": 60_000, "rpd": 86_400_000}
TOKEN_FIELDS = {"tpm": 60_000, "tpd": 86_400_000}
BUDGET_FIELDS = ("budget_day", "budget_week", "budget_month")
FIELDS = (*REQUEST_FIELDS, *TOKEN_FIELDS, *BUDGET_FIELDS)


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # "key:12", "org:3", "org:3:tier:verified"
    field: str  # one of FIELDS
    value: int

    @property
    def kind(self) -> str:
        if self.field in REQUEST_FIELDS:
            return "r"
        if self.field in TOKEN_FIELDS:
            return "t"
        return "b"


@dataclass(frozen=True, slots=True)
class Check:
    """One limit's state after an admission attempt: how much is used and when it resets (ms)."""

    limit: Limit
    used: int
    reset_ms: int
    wait_ms: int  # > 0 when this limit refused the request: ms until it would admit one


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held for one admitted request: its id, how many, and when (budgets use that period)."""

    member: str
    tokens: int
    at: datetime


_MAX_HELD = 100_000


def _needs(reserve: int) -> int:
    # Without a reservation a request needs one free token, as before: admitted while used < limit.
    return max(reserve, 1)


def period_bounds(field: str, now: datetime) -> tuple[str, int]:
    """(period id, ms until the period ends) of a budget field, UTC calendar periods."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if field == "budget_day":
        start, end = day, day + timedelta(days=1)
    elif field == "budget_week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif field == "budget_month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"not a budget field: {field}")
    return start.strftime("%Y%m%d"), max(1, int((end - now).total_seconds() * 1000))


def _window_ms(limit: Limit) -> int:
    return REQUEST_FIELDS.get(limit.field) or TOKEN_FIELDS[limit.field]


class MemoryLimiter:
    """In-process store: exact for a single replica. No awaits inside, so each call is atomic."""

    def __init__(self) -> None:
        # Log entries are [time, tokens] lists so a reservation can be corrected in place.
        self._logs: dict[str, deque[list[int]]] = {}
        self._sums: dict[str, int] = {}
        self._budgets: dict[str, tuple[str, int]] = {}
        # member -> what its reservation holds: (key, log entry) or (key, period) per limit.
        self._held: dict[str, list[tuple[str, list[int] | str]]] = {}

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    def _trim(self, key: str, window: int, now: int) -> deque[list[int]]:
        log = self._logs.setdefault(key, deque())
        while log and log[0][0] <= now - window:
            _, tokens = log.popleft()
            self._sums[key] = self._sums.get(key, 0) - tokens
        return log

    async def admit(self, limits: list[Limit], reservation: Reservation | None = None) -> list[Check]:
        now = self._now_ms()
        need = _needs(reservation.tokens if reservation else 0)
        checks: list[Check] = []
        for limit in limits:
            key = f"{limit.scope}:{limit.field}"
            if limit.kind == "b":
                period, left = period_bounds(limit.field, datetime.fromtimestamp(now / 1000, UTC))
                stored = self._budgets.get(key)
                used = stored[1] if stored and stored[0] == period else 0
                checks.append(Check(limit, used, left, left if used + need > limit.value else 0))
                continue
            window = _window_ms(limit)
            log = self._trim(key, window, now)
            used = len(log) if limit.kind == "r" else self._sums.get(key, 0)
            refused = used >= limit.value if limit.kind == "r" else used + need > limit.value
            wait = 0
            if refused:
                if limit.kind == "r":
                    wait = log[0][0] + window - now if log else 1
                else:
                    # Until enough old entries leave the window; a reservation over the limit never fits.
                    excess, wait = used + need - limit.value, window
                    for ts, tokens in log:
                        excess -= tokens
                        if excess <= 0:
                            wait = ts + window - now
                            break
            reset = log[-1][0] + window - now if log else 0
            checks.append(Check(limit, used, reset, max(wait, 1) if refused else 0))
        if not any(c.wait_ms for c in checks):
            held: list[tuple[str, list[int] | str]] = []
            for limit in limits:
                key = f"{limit.scope}:{limit.field}"
                if limit.kind == "r":
                    self._logs.setdefault(key, deque()).append([now, 1])
                elif reservation is not None and reservation.tokens > 0 and limit.kind == "t":
                    entry = [now, reservation.tokens]
                    self._trim(key, _window_ms(limit), now).append(entry)
                    self._sums[key] = self._sums.get(key, 0) + reservation.tokens
                    held.append((key, entry))
                elif reservation is not None and reservation.tokens > 0:
                    period, _ = period_bounds(limit.field, datetime.fromtimestamp(now / 1000, UTC))
                    stored = self._budgets.get(key)
                    used = stored[1] if stored and stored[0] == period else 0
                    self._budgets[key] = (period, used + reservation.tokens)
                    held.append((key, period))
            if held and reservation is not None:
                self._held[reservation.member] = held
                while len(self._held) > _MAX_HELD:
                    # A request never settled (its task died): forget the oldest, it stays counted.
                    self._held.pop(next(iter(self._held)))
        return checks

    async def settle(self, limits: list[Limit], tokens: int, reservation: Reservation | None = None) -> None:
        held = self._held.pop(reservation.member, None) if reservation is not None else None
        if held is not None and reservation is not None:
            delta = tokens - reservation.tokens
            for key, where in held:
                if isinstance(where, list):
                    log = self._logs.get(key)
                    # Still in the window: correct it where it stands; gone: nothing is counted any more.
                    if log and log[0][0] <= where[0]:
                        where[1] = tokens
                        self._sums[key] = self._sums.get(key, 0) + delta
                else:
                    stored = self._budgets.get(key)
                    if stored and stored[0] == where:
                        self._budgets[key] = (where, max(stored[1] + delta, 0))
            return
        if tokens <= 0:
            return
        now = self._now_ms()
        for limit in limits:
            key = f"{limit.scope}:{limit.field}"
            if limit.kind == "t":
                self._trim(key, _window_ms(limit), now).append([now, tokens])
                self._sums[key] = self._sums.get(key, 0) + tokens
            elif limit.kind == "b":
                period, _ = period_bounds(limit.field, datetime.fromtimestamp(now / 1000, UTC))
                stored = self._budgets.get(key)
                used = stored[1] if stored and stored[0] == period else 0
                self._budgets[key] = (period, used + tokens)


# KEYS: two per limit (log/counter, running sum). ARGV: member, reserve, then per limit kind, window_ms, value.
# Returns {refused(0/1), then per limit: used, reset_ms, wait_ms}.
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local reserve = tonumber(ARGV[2])
local need = math.max(reserve, 1)
local n = (#ARGV - 2) / 3
local out = {0}
local refused = 0
for i = 1, n do
  local kind = ARGV[3 + (i - 1) * 3]
  local window = tonumber(ARGV[4 + (i - 1) * 3])
  local limit = tonumber(ARGV[5 + (i - 1) * 3])
  local key = KEYS[(i - 1) * 2 + 1]
  local sumkey = KEYS[(i - 1) * 2 + 2]
  local used, reset, wait = 0, 0, 0
  if kind == 'b' then
    used = tonumber(redis.call('GET', key) or '0')
    reset = window
    if used + need > limit then wait = window end
  else
    if kind == 'r' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
      used = redis.call('ZCARD', key)
    else
      local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now - window)
      if #expired > 0 then
        local drop = 0
        for _, m in ipairs(expired) do drop = drop + tonumber(string.match(m, ':(%d+)$')) end
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
        used = redis.call('DECRBY', sumkey, drop)
      else
        used = tonumber(redis.call('GET', sumkey) or '0')
      end
    end
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if #newest > 0 then reset = tonumber(newest[2]) + window - now end
    if (kind == 'r' and used >= limit) or (kind == 't' and used + need > limit) then
      wait = 1
      if kind == 'r' then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if #oldest > 0 then wait = tonumber(oldest[2]) + window - now end
      else
        local excess = used + need - limit
        wait = window
        local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
        for j = 1, #entries, 2 do
          excess = excess - tonumber(string.match(entries[j], ':(%d+)$'))
          if excess <= 0 then wait = tonumber(entries[j + 1]) + window - now break end
        end
      end
      if wait < 1 then wait = 1 end
    end
  end
  if wait > 0 then refused = 1 end
  table.insert(out, used)
  table.insert(out, reset)
  table.insert(out, wait)
end
if refused == 0 then
  for i = 1, n do
    local kind = ARGV[3 + (i - 1) * 3]
    local window = tonumber(ARGV[4 + (i - 1) * 3])
    local key = KEYS[(i - 1) * 2 + 1]
    local sumkey = KEYS[(i - 1) * 2 + 2]
    if kind == 'r' then
      redis.call('ZADD', key, now, member)
      redis.call('PEXPIRE', key, window)
    elseif kind == 't' and reserve > 0 then
      redis.call('ZADD', key, now, member .. ':' .. reserve)
      redis.call('INCRBY', sumkey, reserve)
      redis.call('PEXPIRE', key, window)
      redis.call('PEXPIRE', sumkey, window)
    elseif kind == 'b' and reserve > 0 then
      redis.call('INCRBY', key, reserve)
      redis.call('PEXPIRE', key, window)
    end
  end
end
out[1] = refused
return out
"""

# KEYS as above; ARGV: member, tokens, reserved, then per limit kind, window_ms. With a reservation
# (reserved > 0) its log entry is replaced at its own time stamp and the counters corrected by the
# difference; an entry that already left its window (or a budget period that turned) is left alone.
_SETTLE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local tokens = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
local n = (#ARGV - 3) / 2
for i = 1, n do
  local kind = ARGV[4 + (i - 1) * 2]
  local window = tonumber(ARGV[5 + (i - 1) * 2])
  local key = KEYS[(i - 1) * 2 + 1]
  local sumkey = KEYS[(i - 1) * 2 + 2]
  if kind == 't' then
    if reserved > 0 then
      local held = member .. ':' .. reserved
      local score = redis.call('ZSCORE', key, held)
      if score then
        redis.call('ZREM', key, held)
        redis.call('ZADD', key, score, member .. ':' .. tokens)
        redis.call('INCRBY', sumkey, tokens - reserved)
      end
    elseif tokens > 0 then
      redis.call('ZADD', key, now, member .. ':' .. tokens)
      redis.call('INCRBY', sumkey, tokens)
      redis.call('PEXPIRE', key, window)
      redis.call('PEXPIRE', sumkey, window)
    end
  elseif kind == 'b' then
    if reserved > 0 then
      if redis.call('EXISTS', key) == 1 then
        local left = redis.call('INCRBY', key, tokens - reserved)
        if left < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
      end
    elseif tokens > 0 then
      redis.call('INCRBY', key, tokens)
      redis.call('PEXPIRE', key, window)
    end
  end
end
return 1
"""


class RedisLimiter:
    """Shared store: exact across replicas (one Lua script per admission)."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._admit = redis.register_script(_ADMIT_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)

    def _keys(self, limit: Limit, now: datetime) -> tuple[list[str], int]:
        base = f"{self.prefix}{limit.scope}:{limit.field}"
        if limit.kind == "b":
            period, left = period_bounds(limit.field, now)
            return [f"{base}:{period}", f"{base}:{period}"], left
        return [base, base + ":sum"], _window_ms(limit)

    async def admit(self, limits: list[Limit], reservation: Reservation | None = None) -> list[Check]:
        now = reservation.at if reservation is not None else datetime.now(UTC)
        keys: list[str] = []
        args: list[Any] = [reservation.member if reservation else uuid.uuid4().hex,
                           reservation.tokens if reservation else 0]
        for limit in limits:
            pair, window = self._keys(limit, now)
            keys += pair
            args += [limit.kind, window, limit.value]
        out = await self._admit(keys=keys, args=args)
        return [
            Check(limit, int(out[1 + i * 3]), int(out[2 + i * 3]), int(out[3 + i * 3]))
            for i, limit in enumerate(limits)
        ]

    async def settle(self, limits: list[Limit], tokens: int, reservation: Reservation | None = None) -> None:
        counted = [limit for limit in limits if limit.kind in ("t", "b")]
        reserved = reservation.tokens if reservation is not None else 0
        if (tokens <= 0 and reserved <= 0) or not counted:
            return
        # Budgets are corrected in the period the reservation was made in.
        now = reservation.at if reservation is not None else datetime.now(UTC)
        keys: list[str] = []
        args: list[Any] = [reservation.member if reservation else uuid.uuid4().hex, int(tokens), reserved]
        for limit in counted:
            pair, window = self._keys(limit, now)
            keys += pair
            args += [limit.kind, window]
        await self._settle(keys=keys, args=args)
