"""Exact rate limits and token budgets: one algorithm, two stores (Redis for replicas, memory for one).

A *limit* is (scope, field, value): ``key:12`` / ``rpm`` / 10. Fields:

* ``rpm``, ``rpd`` - requests in any sliding 60 s / 24 h window (a log of admission times,
  so "10 per minute" means never an 11th within 60 s, with no edge bursts of fixed windows);
* ``tpm``, ``tpd`` - tokens in a sliding window (a log of (time, tokens) and a running sum);
  a request is admitted while the window's tokens are under the limit, its tokens are
  added when it is settled (its size is unknown before);
* ``budget_day``, ``budget_week``, ``budget_month`` - tokens per calendar period (UTC), a
  counter reset when the period turns, as budgets are planned.

With Redis, admission is ONE round trip: a Lua script checks every limit of the request and
records it only if all pass, atomically, with Redis's clock, so N replicas admit exactly what
one would. Settling (adding tokens) is a second script, after the response.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["FIELDS", "REQUEST_FIELDS", "Check", "Limit", "MemoryLimiter", "RedisLimiter", "period_bounds"]

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
        self._logs: dict[str, deque[tuple[int, int]]] = {}
        self._sums: dict[str, int] = {}
        self._budgets: dict[str, tuple[str, int]] = {}

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    def _trim(self, key: str, window: int, now: int) -> deque[tuple[int, int]]:
        log = self._logs.setdefault(key, deque())
        while log and log[0][0] <= now - window:
            _, tokens = log.popleft()
            self._sums[key] = self._sums.get(key, 0) - tokens
        return log

    async def admit(self, limits: list[Limit]) -> list[Check]:
        now = self._now_ms()
        checks: list[Check] = []
        for limit in limits:
            key = f"{limit.scope}:{limit.field}"
            if limit.kind == "b":
                period, left = period_bounds(limit.field, datetime.fromtimestamp(now / 1000, UTC))
                stored = self._budgets.get(key)
                used = stored[1] if stored and stored[0] == period else 0
                checks.append(Check(limit, used, left, left if used >= limit.value else 0))
                continue
            window = _window_ms(limit)
            log = self._trim(key, window, now)
            used = len(log) if limit.kind == "r" else self._sums.get(key, 0)
            wait = 0
            if used >= limit.value:
                if limit.kind == "r":
                    wait = log[0][0] + window - now if log else 1
                else:
                    excess, wait = used - limit.value, 1
                    for ts, tokens in log:
                        excess -= tokens
                        if excess < 0:
                            wait = ts + window - now
                            break
            reset = log[-1][0] + window - now if log else 0
            checks.append(Check(limit, used, reset, max(wait, 0) if used >= limit.value else 0))
        if not any(c.wait_ms for c in checks):
            for limit in limits:
                if limit.kind == "r":
                    self._logs.setdefault(f"{limit.scope}:{limit.field}", deque()).append((now, 1))
        return checks

    async def settle(self, limits: list[Limit], tokens: int) -> None:
        if tokens <= 0:
            return
        now = self._now_ms()
        for limit in limits:
            key = f"{limit.scope}:{limit.field}"
            if limit.kind == "t":
                self._trim(key, _window_ms(limit), now).append((now, tokens))
                self._sums[key] = self._sums.get(key, 0) + tokens
            elif limit.kind == "b":
                period, _ = period_bounds(limit.field, datetime.fromtimestamp(now / 1000, UTC))
                stored = self._budgets.get(key)
                used = stored[1] if stored and stored[0] == period else 0
                self._budgets[key] = (period, used + tokens)


# KEYS: two per limit (log/counter, running sum). ARGV: member, then per limit kind, window_ms, value.
# Returns {refused(0/1), then per limit: used, reset_ms, wait_ms}.
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = (#ARGV - 1) / 3
local out = {0}
local refused = 0
for i = 1, n do
  local kind = ARGV[2 + (i - 1) * 3]
  local window = tonumber(ARGV[3 + (i - 1) * 3])
  local limit = tonumber(ARGV[4 + (i - 1) * 3])
  local key = KEYS[(i - 1) * 2 + 1]
  local sumkey = KEYS[(i - 1) * 2 + 2]
  local used, reset, wait = 0, 0, 0
  if kind == 'b' then
    used = tonumber(redis.call('GET', key) or '0')
    reset = window
    if used >= limit then wait = window end
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
    if used >= limit then
      wait = 1
      if kind == 'r' then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if #oldest > 0 then wait = tonumber(oldest[2]) + window - now end
      else
        local excess = used - limit
        local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
        for j = 1, #entries, 2 do
          excess = excess - tonumber(string.match(entries[j], ':(%d+)$'))
          if excess < 0 then wait = tonumber(entries[j + 1]) + window - now break end
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
    if ARGV[2 + (i - 1) * 3] == 'r' then
      local key = KEYS[(i - 1) * 2 + 1]
      redis.call('ZADD', key, now, member)
      redis.call('PEXPIRE', key, tonumber(ARGV[3 + (i - 1) * 3]))
    end
  end
end
out[1] = refused
return out
"""

# KEYS as above; ARGV: member, tokens, then per limit kind, window_ms.
_SETTLE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local tokens = tonumber(ARGV[2])
local n = (#ARGV - 2) / 2
for i = 1, n do
  local kind = ARGV[3 + (i - 1) * 2]
  local window = tonumber(ARGV[4 + (i - 1) * 2])
  local key = KEYS[(i - 1) * 2 + 1]
  local sumkey = KEYS[(i - 1) * 2 + 2]
  if kind == 't' then
    redis.call('ZADD', key, now, member .. ':' .. tokens)
    redis.call('INCRBY', sumkey, tokens)
    redis.call('PEXPIRE', key, window)
    redis.call('PEXPIRE', sumkey, window)
  elseif kind == 'b' then
    redis.call('INCRBY', key, tokens)
    redis.call('PEXPIRE', key, window)
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

    async def admit(self, limits: list[Limit]) -> list[Check]:
        now = datetime.now(UTC)
        keys: list[str] = []
        args: list[Any] = [uuid.uuid4().hex]
        for limit in limits:
            pair, window = self._keys(limit, now)
            keys += pair
            args += [limit.kind, window, limit.value]
        out = await self._admit(keys=keys, args=args)
        return [
            Check(limit, int(out[1 + i * 3]), int(out[2 + i * 3]), int(out[3 + i * 3]))
            for i, limit in enumerate(limits)
        ]

    async def settle(self, limits: list[Limit], tokens: int) -> None:
        counted = [limit for limit in limits if limit.kind in ("t", "b")]
        if tokens <= 0 or not counted:
            return
        now = datetime.now(UTC)
        keys: list[str] = []
        args: list[Any] = [uuid.uuid4().hex, int(tokens)]
        for limit in counted:
            pair, window = self._keys(limit, now)
            keys += pair
            args += [limit.kind, window]
        await self._settle(keys=keys, args=args)
