"""Submits per second per submitter (``submits_per_second``, bursts of ``submit_burst``): a
token bucket in Redis, checked by one Lua call per submit, and only while the limit is on.

Why Redis and not a bucket in each gateway: gateways are stateless and sit behind a load
balancer, so a per-process bucket would let a client submit N times the limit through N
gateways (and reset whenever one restarts). The script reads, refills and takes a token
atomically, with Redis's own clock (``TIME``), so gateways' clocks need not agree. The cost is
one round trip per submit to the Redis the submit uses anyway to queue the job.

With authentication off every submit is ``anonymous``: the limit is then one bucket for all.
"""

from __future__ import annotations

import math

from aiohttp import web

from sparkgate.gateway.resources import AREDIS, SETTINGS
from sparkgate.jobs.errors import TooManyRequests

KEY_PREFIX = "sparkgate:submit-rate:"

# KEYS[1]: the bucket. ARGV: rate (tokens per second), burst (capacity).
# Returns {1, 0} when a token was taken, else {0, milliseconds until one is there}.
# Tokens are kept as text: Redis would truncate a Lua number argument to an integer.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local taken = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(now))
-- Gone once it would be full again: an idle submitter costs no memory.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {taken, wait_ms}
"""


async def check_submit_rate(app: web.Application, submitter: str) -> None:
    """TooManyRequests (429, Retry-After) when ``submitter`` is over its rate."""
    settings = app[SETTINGS]
    if settings.submits_per_second <= 0:
        return
    script = app[AREDIS].register_script(TOKEN_BUCKET)
    taken, wait_ms = await script(keys=[KEY_PREFIX + submitter],
                                  args=[repr(settings.submits_per_second),
                                        settings.submit_burst])
    if taken:
        return
    retry_after_s = max(1, math.ceil(int(wait_ms) / 1000))
    raise TooManyRequests(
        f"{submitter} is over its limit of {settings.submits_per_second:g} submits per "
        f"second (bursts of {settings.submit_burst}); retry in {retry_after_s} s",
        retry_after_s=retry_after_s,
        details={"submitter": submitter, "submitsPerSecond": settings.submits_per_second,
                 "burst": settings.submit_burst, "retryAfterMs": int(wait_ms)})
