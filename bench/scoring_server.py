"""The floor of scenario 7: examples/churn.py's scoring code (the same ``features`` and
``predict``) and the same model, behind a bare aiohttp handler in one process — no validation,
no job, no database, no queue. ``python -m bench.scoring_server PORT MODEL_URL``: the model's
bytes are fetched once from the gateway's store (``GET .../models/churn/versions/{sha}``).
"""

from __future__ import annotations

import pickle
import sys
import urllib.request

from aiohttp import web

from sparkgate.examples import churn

MODEL = web.AppKey("model", dict)


async def score(request: web.Request) -> web.Response:
    fields = await request.json()
    customer = {name: [fields[name]] for name in churn.CUSTOMER_FIELDS}
    probability = churn.predict(request.app[MODEL], churn.features(customer))[0]
    return web.json_response({"success": True, "errors": [],
                              "payload": {"churnProbability": float(probability)}})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    port, model_url = int(sys.argv[1]), sys.argv[2]
    with urllib.request.urlopen(model_url, timeout=60) as response:
        model = pickle.loads(response.read())  # written by this run's churn_train job
    app = web.Application()
    app[MODEL] = model
    app.router.add_post("/v2/api/functions/{name}/jobs", score)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
