"""Brute-force throttling for sign-in entry points (password login, eID callback).

After ``access.login_max_failures`` failures of one key within ``access.login_window_s``
seconds, that key is locked for ``access.login_lockout_s`` seconds: ``check`` raises
RateLimited (429, Retry-After). Shared across replicas through Redis when
``access.redis_url`` is set. Throttle the account and the client address separately, so that
neither a password spray across accounts nor a guess run against one account gets through::

    throttle = login_throttle(hub)
    keys = [f"user:{email.casefold()}", f"ip:{request.client.host}"]
    for k in keys:
        await throttle.check(k)
    if not password_ok:
        for k in keys:
            await throttle.fail(k)
        ...
    await throttle.succeed(f"user:{email.casefold()}")
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from ..errors import RateLimited

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["LoginThrottle", "login_throttle"]

# KEYS: failures, lock; ARGV: window_s, max_failures, lockout_s. Returns the lock's seconds left (0: not locked).
_FAIL_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""


class LoginThrottle:
    def __init__(
        self, *, max_failures: int, window_s: float, lockout_s: float, redis: Any = None, prefix: str = "sovhub:"
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.redis = redis
        self.prefix = prefix + "login:"
        # key -> (window start, failures); key -> locked until (monotonic seconds)
        self._failures: dict[str, tuple[float, int]] = {}
        self._locked: dict[str, float] = {}

    def _key(self, key: str) -> str:
        # Hash so that e-mail addresses do not sit in Redis in the clear.
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def _refuse(self, seconds: float) -> RateLimited:
        return RateLimited(
            f"too many failed sign-in attempts; try again in {int(seconds + 0.999)} seconds",
            retry_after=seconds,
            code="login_throttled",
        )

    async def check(self, key: str) -> None:
        """Raise RateLimited while `key` is locked out."""
        k = self._key(key)
        if self.redis is not None:
            ttl = int(await self.redis.ttl(self.prefix + "lock:" + k))
            if ttl > 0:
                raise self._refuse(ttl)
            return
        until = self._locked.get(k, 0.0)
        now = time.monotonic()
        if until > now:
            raise self._refuse(until - now)
        self._locked.pop(k, None)

    async def fail(self, key: str) -> None:
        """Count a failed attempt; the one that reaches the limit starts the lockout."""
        k = self._key(key)
        if self.redis is not None:
            await self.redis.eval(
                _FAIL_LUA, 2, self.prefix + "fail:" + k, self.prefix + "lock:" + k,
                int(self.window_s), self.max_failures, int(self.lockout_s),
            )
            return
        now = time.monotonic()
        if len(self._failures) > 100_000:
            # Bound memory under a spray of distinct keys: forget windows that have ended.
            self._failures = {x: v for x, v in self._failures.items() if now - v[0] < self.window_s}
        start, count = self._failures.get(k, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        count += 1
        if count >= self.max_failures:
            self._locked[k] = now + self.lockout_s
            self._failures.pop(k, None)
        else:
            self._failures[k] = (start, count)

    async def succeed(self, key: str) -> None:
        """Forget the failures of `key` (a lockout in force stays)."""
        k = self._key(key)
        if self.redis is not None:
            await self.redis.delete(self.prefix + "fail:" + k)
            return
        self._failures.pop(k, None)


def login_throttle(hub: Hub) -> LoginThrottle:
    """The hub's one throttle (Redis-backed when access.redis_url is set)."""
    throttle = hub.services.get("login_throttle")
    if throttle is None:
        from .redis_conn import redis_client

        s = hub.settings.access
        throttle = LoginThrottle(
            max_failures=s.login_max_failures, window_s=s.login_window_s, lockout_s=s.login_lockout_s,
            redis=redis_client(hub), prefix=s.redis_prefix,
        )
        hub.services["login_throttle"] = throttle
    return throttle
