"""Live balances of grants, for admission: Redis (shared by replicas, exact) or memory (one replica).

The ledger in the database is the book of record, but no request waits for it. Admission
reserves a request's highest cost here in ONE atomic step (a Lua script with Redis): the
available credits of the organization's grants, earliest expiry first, are checked and the
hold taken together, so concurrent requests on any number of replicas can never take more than
there is. Every change is appended, in the same step, to a *journal* (a Redis stream) that
:mod:`.journal` copies into the ledger in batches; the journal is the durable record of a
reservation and of its settlement until the ledger has it.

A hold names its legs (grant:amount, in spending order) and a deadline. Settling posts the real
cost across the legs in order and gives the rest back; a hold whose replica never settled it
(killed) is posted at its reserved amount once its deadline passes (:meth:`expire`), so an
answered request is never left without its one debit. Amounts are micro-credits; Lua holds them
as doubles, exact up to 2^53 (nine thousand million credits).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["JournalEntry", "LiveStore", "MemoryLive", "RedisLive", "Reserved"]

#: (position, fields) with fields as strings: op, tid, legs, deadline, meta, extra, unpaid, details, grant, amount.
JournalEntry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Reserved:
    ok: bool
    remaining: int
    duplicate: bool = False
    balances: dict[int, int] = field(default_factory=dict)


class LiveStore(Protocol):
    async def load(self, balances: dict[int, int]) -> None: ...

    async def reserve(self, tid: str, grants: list[int], amount: int, ttl_ms: int, meta: str) -> Reserved: ...

    async def settle(self, items: list[tuple[str, int, str]]) -> int: ...

    async def expire(self, limit: int = 500) -> int: ...

    async def take(self, grant: int) -> int: ...

    async def balances(self, grants: list[int]) -> dict[int, int]: ...

    async def read(self, after: str | None, count: int) -> list[JournalEntry]: ...

    async def trim(self, upto: str) -> None: ...


def _legs(text: str) -> list[tuple[int, int]]:
    return [(int(g), int(a)) for g, a in (leg.split(":") for leg in text.split(",") if leg)]


class MemoryLive:
    """In-process store: exact for one replica (no awaits inside, so each call is atomic)."""

    def __init__(self) -> None:
        self._balance: dict[int, int] = {}
        self._holds: dict[str, tuple[str, str, int]] = {}  # tid -> (legs, meta, deadline_ms)
        self._journal: deque[JournalEntry] = deque()
        self._seq = 0

    def _append(self, fields: dict[str, str]) -> None:
        self._seq += 1
        self._journal.append((f"{self._seq}", fields))

    async def load(self, balances: dict[int, int]) -> None:
        for grant, amount in balances.items():
            self._balance.setdefault(grant, amount)

    async def reserve(self, tid: str, grants: list[int], amount: int, ttl_ms: int, meta: str) -> Reserved:
        if tid in self._holds:
            return Reserved(False, 0, duplicate=True)
        balances = {g: self._balance.get(g, 0) for g in grants}
        total = sum(balances.values())
        if total < amount:
            return Reserved(False, total, balances=balances)
        if amount == 0:
            return Reserved(True, total)
        left, legs = amount, []
        for g in grants:
            take = min(balances[g], left)
            if take > 0:
                self._balance[g] -= take
                legs.append(f"{g}:{take}")
                left -= take
            if left == 0:
                break
        deadline = int(time.time() * 1000) + ttl_ms
        self._holds[tid] = (",".join(legs), meta, deadline)
        self._append({"op": "pending", "tid": tid, "legs": ",".join(legs), "deadline": str(deadline), "meta": meta})
        return Reserved(True, total - amount)

    async def settle(self, items: list[tuple[str, int, str]]) -> int:
        done = 0
        for tid, cost, details in items:
            hold = self._holds.pop(tid, None)
            if hold is None:
                continue
            legs_text, meta, _ = hold
            legs = _legs(legs_text)
            left, out = cost, []
            for g, held in legs:
                post = min(held, left)
                left -= post
                self._balance[g] = self._balance.get(g, 0) + held - post
                out.append(f"{g}:{post}:{held}")
            extra = []
            for g, _ in legs:
                if left == 0:
                    break
                take = min(self._balance.get(g, 0), left)
                if take > 0:
                    self._balance[g] -= take
                    extra.append(f"{g}:{take}")
                    left -= take
            self._append({"op": "post", "tid": tid, "legs": ",".join(out), "extra": ",".join(extra),
                          "unpaid": str(left), "meta": meta, "details": details})
            done += 1
        return done

    async def expire(self, limit: int = 500) -> int:
        now = int(time.time() * 1000)
        due = [tid for tid, (_, _, deadline) in self._holds.items() if deadline <= now][:limit]
        for tid in due:
            legs_text, meta, _ = self._holds.pop(tid)
            out = [f"{g}:{a}:{a}" for g, a in _legs(legs_text)]
            self._append({"op": "post", "tid": tid, "legs": ",".join(out), "extra": "", "unpaid": "0",
                          "meta": meta, "details": json.dumps({"expired": True})})
        return len(due)

    async def take(self, grant: int) -> int:
        amount = self._balance.get(grant, 0)
        if amount > 0:
            self._balance[grant] = 0
            self._append({"op": "return", "grant": str(grant), "amount": str(amount)})
        return amount

    async def balances(self, grants: list[int]) -> dict[int, int]:
        return {g: self._balance[g] for g in grants if g in self._balance}

    async def read(self, after: str | None, count: int) -> list[JournalEntry]:
        return [self._journal[i] for i in range(min(count, len(self._journal)))]

    async def trim(self, upto: str) -> None:
        while self._journal and int(self._journal[0][0]) <= int(upto):
            self._journal.popleft()

    @property
    def holds(self) -> int:
        return len(self._holds)


_RESERVE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {-1, 0} end
local amount = tonumber(ARGV[2])
local n = #KEYS - 3
local bal, total = {}, 0
for i = 1, n do
  local b = tonumber(redis.call('GET', KEYS[3 + i]) or '0')
  bal[i] = b
  total = total + b
end
if total < amount then
  local out = {0, total}
  for i = 1, n do table.insert(out, bal[i]) end
  return out
end
if amount == 0 then return {1, total} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left, legs = amount, {}
for i = 1, n do
  if left == 0 then break end
  local take = math.min(bal[i], left)
  if take > 0 then
    redis.call('DECRBY', KEYS[3 + i], take)
    table.insert(legs, ARGV[4 + i] .. ':' .. take)
    left = left - take
  end
end
local deadline = now + tonumber(ARGV[3])
local joined = table.concat(legs, ',')
redis.call('HSET', KEYS[3], 'legs', joined, 'meta', ARGV[4], 'deadline', deadline)
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
redis.call('XADD', KEYS[2], '*', 'op', 'pending', 'tid', ARGV[1], 'legs', joined, 'deadline', deadline, 'meta', ARGV[4])
return {1, total - amount}
"""

_SETTLE = """
local prefix = ARGV[1]
local done = 0
for i = 2, #ARGV, 3 do
  local tid, cost, details = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local hkey = prefix .. 'h:' .. tid
  local legs = redis.call('HGET', hkey, 'legs')
  if legs then
    local meta = redis.call('HGET', hkey, 'meta')
    local left, out, extra = cost, {}, {}
    for g, a in string.gmatch(legs, '(%d+):(%d+)') do
      a = tonumber(a)
      local post = math.min(a, left)
      left = left - post
      if a > post then redis.call('INCRBY', prefix .. 'g:' .. g, a - post) end
      table.insert(out, g .. ':' .. post .. ':' .. a)
    end
    if left > 0 then
      for g, a in string.gmatch(legs, '(%d+):(%d+)') do
        if left == 0 then break end
        local b = tonumber(redis.call('GET', prefix .. 'g:' .. g) or '0')
        local take = math.min(b, left)
        if take > 0 then
          redis.call('DECRBY', prefix .. 'g:' .. g, take)
          table.insert(extra, g .. ':' .. take)
          left = left - take
        end
      end
    end
    redis.call('DEL', hkey)
    redis.call('ZREM', KEYS[1], tid)
    redis.call('XADD', KEYS[2], '*', 'op', 'post', 'tid', tid, 'legs', table.concat(out, ','),
               'extra', table.concat(extra, ','), 'unpaid', left, 'meta', meta, 'details', details)
    done = done + 1
  end
end
return done
"""

_EXPIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, tid in ipairs(due) do
  local hkey = ARGV[1] .. 'h:' .. tid
  local legs = redis.call('HGET', hkey, 'legs')
  if legs then
    local out = {}
    for g, a in string.gmatch(legs, '(%d+):(%d+)') do table.insert(out, g .. ':' .. a .. ':' .. a) end
    redis.call('XADD', KEYS[2], '*', 'op', 'post', 'tid', tid, 'legs', table.concat(out, ','), 'extra', '',
               'unpaid', 0, 'meta', redis.call('HGET', hkey, 'meta'), 'details', '{"expired": true}')
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', KEYS[1], tid)
end
return #due
"""

_TAKE = """
local b = tonumber(redis.call('GET', KEYS[1]) or '0')
if b > 0 then
  redis.call('SET', KEYS[1], 0)
  redis.call('XADD', KEYS[2], '*', 'op', 'return', 'grant', ARGV[1], 'amount', b)
end
return b
"""


class RedisLive:
    """Shared store: one Lua script per reservation, one per batch of settlements."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.holds_key = prefix + "holds"
        self.journal_key = prefix + "journal"
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._expire = redis.register_script(_EXPIRE)
        self._take = redis.register_script(_TAKE)

    def _grant(self, grant: int) -> str:
        return f"{self.prefix}g:{grant}"

    async def load(self, balances: dict[int, int]) -> None:
        if balances:
            async with self.redis.pipeline(transaction=False) as pipe:
                for grant, amount in balances.items():
                    pipe.set(self._grant(grant), amount, nx=True)
                await pipe.execute()

    async def reserve(self, tid: str, grants: list[int], amount: int, ttl_ms: int, meta: str) -> Reserved:
        keys = [self.holds_key, self.journal_key, f"{self.prefix}h:{tid}", *(self._grant(g) for g in grants)]
        out = await self._reserve(keys=keys, args=[tid, amount, ttl_ms, meta, *grants])
        status, total = int(out[0]), int(out[1])
        if status == -1:
            return Reserved(False, 0, duplicate=True)
        if status == 0:
            return Reserved(False, total, balances={g: int(b) for g, b in zip(grants, out[2:], strict=True)})
        return Reserved(True, total)

    async def settle(self, items: list[tuple[str, int, str]]) -> int:
        if not items:
            return 0
        args: list[Any] = [self.prefix]
        for tid, cost, details in items:
            args += [tid, cost, details]
        return int(await self._settle(keys=[self.holds_key, self.journal_key], args=args))

    async def expire(self, limit: int = 500) -> int:
        return int(await self._expire(keys=[self.holds_key, self.journal_key], args=[self.prefix, limit]))

    async def take(self, grant: int) -> int:
        return int(await self._take(keys=[self._grant(grant), self.journal_key], args=[grant]))

    async def balances(self, grants: list[int]) -> dict[int, int]:
        if not grants:
            return {}
        values = await self.redis.mget([self._grant(g) for g in grants])
        return {g: int(v) for g, v in zip(grants, values, strict=True) if v is not None}

    async def read(self, after: str | None, count: int) -> list[JournalEntry]:
        start = f"({after}" if after else "-"
        rows = await self.redis.xrange(self.journal_key, min=start, max="+", count=count)
        return [(str(pos), {str(k): str(v) for k, v in fields.items()}) for pos, fields in rows]

    async def trim(self, upto: str) -> None:
        # Entries up to `upto` are in the ledger; keep the stream from the next one on.
        ms, _, seq = upto.partition("-")
        await self.redis.xtrim(self.journal_key, minid=f"{ms}-{int(seq or 0) + 1}", approximate=False)
