"""Brute-force throttling for sign-in entry points (password sign-in, eID callback).

A guess is counted *before* it is checked: :meth:`LoginThrottle.attempt` adds one to every key of
the sign-in at once (atomically: one Lua script in Redis, no ``await`` in between in memory) and
refuses (429 ``login_throttled``, Retry-After) when any key has used up its limit, so concurrent
guesses cannot all get past a check that none of them has failed yet. A sign-in that succeeds
gives its guess back (:meth:`succeed`), so people who know their password are never counted.

A password sign-in is counted under three keys (``password_keys``), each with its own limit
within ``access.login_window_s``; the first to run out locks for ``access.login_lockout_s``:

* the account *from this address* (``login_max_failures``): stops a guess run against one
  account and locks only the guesser, not the account's owner elsewhere, nor other people
  behind the same proxy;
* the account from everywhere (``login_max_failures_per_account``, larger): stops a guess run
  spread over many addresses;
* the address, all accounts together (``login_max_failures_per_address``, larger still): stops
  a password spray across accounts. Hammering one account never reaches it, because refused
  guesses are not counted: the pair key locks first.

The address is the real client's (:func:`sovhub.access.addresses.client_address`, which
believes X-Forwarded-For only from ``access.trusted_proxies``). Shared across replicas through
Redis when ``access.redis_url`` is set. Keys are hashed, so e-mail addresses do not sit in
Redis in the clear::

    throttle = hub.services.get(LoginThrottle)
    keys = password_keys(hub, normalize_email(email), client_address(request))
    await throttle.attempt(keys)           # raises RateLimited; the guess is now counted
    if password_ok:
        await throttle.succeed(keys)       # gives the guess back, forgets the pair's count
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RateLimited
from .redis_conn import AccessRedis

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["LoginThrottle", "ThrottleKey", "address_keys", "build_login_throttle", "password_keys"]


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """One counter: its name, the guesses it allows per window, and whether a success forgets it."""

    name: str
    limit: int
    forget_on_success: bool = False


def password_keys(hub: Hub, email: str, address: str) -> list[ThrottleKey]:
    """The keys of a password sign-in for `email` (already normalised) from `address`."""
    s = hub.settings.access
    return [
        ThrottleKey(f"pair:{address}:{email}", s.login_max_failures, forget_on_success=True),
        ThrottleKey(f"user:{email}", s.login_max_failures_per_account),
        ThrottleKey(f"ip:{address}", s.login_max_failures_per_address),
    ]


def address_keys(hub: Hub, address: str) -> list[ThrottleKey]:
    """The key of an eID callback from `address` (the provider checks the person; we count the tries)."""
    return [ThrottleKey(f"ip:{address}", hub.settings.access.login_max_failures_per_address)]


# KEYS: count1, lock1, count2, lock2, ...; ARGV: window_s, lockout_s, limit1, limit2, ...
# Returns the seconds of a lock in force (the guess is refused, nothing counted) or 0 (counted).
_ATTEMPT_LUA = """
local n = #KEYS / 2
for i = 1, n do
  local ttl = redis.call('TTL', KEYS[2 * i])
  if ttl > 0 then return ttl end
end
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if used >= tonumber(ARGV[2 + i]) then
    redis.call('SET', KEYS[2 * i], '1', 'EX', tonumber(ARGV[2]))
    redis.call('DEL', KEYS[2 * i - 1])
    return tonumber(ARGV[2])
  end
end
for i = 1, n do
  if redis.call('INCR', KEYS[2 * i - 1]) == 1 then redis.call('EXPIRE', KEYS[2 * i - 1], tonumber(ARGV[1])) end
end
return 0
"""

# KEYS: counts to give one guess back to; ARGV[i] '1' to delete that count instead.
_REFUND_LUA = """
for i = 1, #KEYS do
  if ARGV[i] == '1' then
    redis.call('DEL', KEYS[i])
  elseif tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"""


class LoginThrottle:
    def __init__(self, *, window_s: float, lockout_s: float, redis: Any = None, prefix: str = "sovhub:") -> None:
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.redis = redis
        self.prefix = prefix + "login:"
        # hashed key -> (window start, guesses counted); hashed key -> locked until (monotonic seconds)
        self._counts: dict[str, tuple[float, int]] = {}
        self._locked: dict[str, float] = {}

    def _key(self, key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def _refuse(self, seconds: float) -> RateLimited:
        return RateLimited(
            f"too many failed sign-in attempts; try again in {int(seconds + 0.999)} seconds",
            retry_after=seconds,
            code="login_throttled",
        )

    async def check(self, keys: Sequence[ThrottleKey]) -> None:
        """Raise RateLimited while any key is locked; counts nothing (for pages that start a sign-in)."""
        for key in keys:
            k = self._key(key.name)
            if self.redis is not None:
                ttl = int(await self.redis.ttl(self.prefix + "lock:" + k))
                if ttl > 0:
                    raise self._refuse(ttl)
                continue
            until = self._locked.get(k, 0.0)
            if until > time.monotonic():
                raise self._refuse(until - time.monotonic())

    async def attempt(self, keys: Sequence[ThrottleKey]) -> None:
        """Count one guess on every key, or refuse it (counting nothing) when any key is used up."""
        hashed = [self._key(key.name) for key in keys]
        if self.redis is not None:
            names = [self.prefix + part + k for k in hashed for part in ("fail:", "lock:")]
            seconds = int(await self.redis.eval(
                _ATTEMPT_LUA, len(names), *names, int(self.window_s), int(self.lockout_s),
                *[key.limit for key in keys],
            ))
            if seconds > 0:
                raise self._refuse(seconds)
            return
        # No await from here to the end: the check and the count are one step for the event loop.
        now = time.monotonic()
        for k in hashed:
            until = self._locked.get(k, 0.0)
            if until > now:
                raise self._refuse(until - now)
            self._locked.pop(k, None)
        if len(self._counts) > 100_000:
            # Bound memory under a spray of distinct keys: forget windows that have ended.
            self._counts = {x: v for x, v in self._counts.items() if now - v[0] < self.window_s}
        current = []
        for key, k in zip(keys, hashed, strict=True):
            start, used = self._counts.get(k, (now, 0))
            if now - start >= self.window_s:
                start, used = now, 0
            if used >= key.limit:
                self._locked[k] = now + self.lockout_s
                self._counts.pop(k, None)
                raise self._refuse(self.lockout_s)
            current.append((k, start, used))
        for k, start, used in current:
            self._counts[k] = (start, used + 1)

    async def succeed(self, keys: Sequence[ThrottleKey]) -> None:
        """The sign-in succeeded: give its guess back; forget the count of `forget_on_success` keys.

        A lockout in force stays.
        """
        hashed = [self._key(key.name) for key in keys]
        if self.redis is not None:
            await self.redis.eval(
                _REFUND_LUA, len(hashed), *[self.prefix + "fail:" + k for k in hashed],
                *["1" if key.forget_on_success else "0" for key in keys],
            )
            return
        for key, k in zip(keys, hashed, strict=True):
            if key.forget_on_success:
                self._counts.pop(k, None)
            elif k in self._counts:
                start, used = self._counts[k]
                self._counts[k] = (start, max(0, used - 1))


def build_login_throttle(hub: Hub) -> LoginThrottle:
    """The hub's one throttle (Redis-backed when access.redis_url is set)."""
    s = hub.settings.access
    return LoginThrottle(
        window_s=s.login_window_s, lockout_s=s.login_lockout_s, redis=hub.services.get(AccessRedis).client,
        prefix=s.redis_prefix,
    )
