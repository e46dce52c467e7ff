"""A lease in Redis: of several processes that could do a job, the one holding it does.

The holder keeps it by renewing it before it expires (``hold()`` again, well within ``ttl_ms``);
when the holder goes silent the lease expires and the next ``hold()`` of another process takes
it. A holder that stalled past its lease may act at the same time as its successor for a moment:
what a lease guards must tolerate that (be conditional, or merely wasteful when doubled).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid

from redis import Redis
from redis.exceptions import RedisError

# Extend the lease only while it is still ours: a holder whose lease expired (a long pause, a
# slow pass) must not extend its successor's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: Redis, key: str, ttl_ms: int, name: str,
                 log: logging.Logger | None = None) -> None:
        """``name`` says in the logs what holds it ("reconciler", "MQTT relay")."""
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.name = name
        self.log = log or logging.getLogger("sparkgate.lease")
        self.token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.holding = False
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def hold(self) -> bool:
        """Renew the lease, or take it if it is free: whether this process holds it now.
        Raises ``RedisError`` when Redis cannot be reached."""
        if self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            self.holding = True
        elif self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self.log.info("%s %s: took the lease%s", self.name, self.token,
                          "; it had lapsed" if self.holding else "")
            self.holding = True
        else:
            if self.holding:
                self.log.info("%s %s: another gateway's %s holds the lease now", self.name,
                              self.token, self.name)
            self.holding = False
        return self.holding

    def release(self) -> None:
        """Give the lease up (on stop), so another process takes over at once."""
        with contextlib.suppress(RedisError):
            self._release(keys=[self.key], args=[self.token])
        self.holding = False
