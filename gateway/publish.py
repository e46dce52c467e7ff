"""Publishing job events from the gateway (the asynchronous Redis client, on the loop)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from sparkgate.gateway.resources import AREDIS
from sparkgate.jobs.events import CHANNEL, encode

log = logging.getLogger("sparkgate.events")


async def publish(app: web.Application, *events: dict[str, Any]) -> None:
    """Best effort: the job is already recorded; a lost event only delays a live view."""
    try:
        async with app[AREDIS].pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(CHANNEL, encode(event))
            await pipe.execute()
    except RedisError as exc:
        log.warning("could not publish %d event(s): %s", len(events), exc)
