"""The HTTP floor of scenarios 2 and 3: a bare aiohttp server that answers the same request
(POST /v2/api/functions/{name}/jobs) with its JSON body, doing nothing else — no validation,
no database, no queue, no access log. ``python -m bench.echo_server PORT``."""

from __future__ import annotations

import sys

from aiohttp import web


async def run(request: web.Request) -> web.Response:
    return web.json_response({"success": True, "payload": await request.json(), "errors": []})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/v2/api/functions/{name}/jobs", run)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
