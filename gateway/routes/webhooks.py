"""``/v2/api/webhooks``: subscriptions to job events and their deliveries (jobs/webhooks.py;
sending is sparkgate/webhook_sender.py). Admins only: a subscription sends job details, results
included, to a URL of its maker's choosing."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.auth import identity, visible
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import (
    JOB_ID_PARAM,
    array,
    links,
    ok,
    path_param,
    query_param,
    request_body,
    use,
)
from sparkgate.gateway.params import json_body, json_object, query_int
from sparkgate.gateway.resources import CATALOG, SETTINGS, STORE
from sparkgate.gateway.routing import ADMIN, Endpoints, Op
from sparkgate.gateway.wire.fields import settable, to_json
from sparkgate.gateway.wire.schema import obj
from sparkgate.gateway.wire.webhooks import (
    DELIVERY,
    WEBHOOK,
    DeliveryInfo,
    Subscribing,
    WebhookInfo,
)
from sparkgate.jobs.errors import BadRequest, NotFound
from sparkgate.jobs.schedules import ScheduleBook
from sparkgate.jobs.webhooks import WebhookBook

endpoints = Endpoints()

MAX_DELIVERIES = 500
_ID = path_param("id", "the webhook's id")
_LIMIT = query_param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_DELIVERIES,
                               "default": 50}, "deliveries to answer, newest first")
_SETTABLE = settable(WebhookInfo)
_SUBSCRIBING = obj({"url": _SETTABLE["url"], "events": _SETTABLE["events"]},
                   {k: v for k, v in _SETTABLE.items() if k not in ("url", "events")})


def _book(request: web.Request) -> WebhookBook:
    return WebhookBook(request.app[CATALOG].engine)


@endpoints.get("/v2/api/webhooks", ADMIN, Op(
    "listWebhooks", "webhooks", "List webhooks", {"200": ok(array(WEBHOOK), "oldest first")}))
async def list_webhooks(request: web.Request) -> web.Response:
    found = await blocking(_book(request).list_webhooks)
    return web.json_response([to_json(WebhookInfo.of(s)) for s in found])


@endpoints.post("/v2/api/webhooks", ADMIN, Op(
    "createWebhook", "webhooks", "Subscribe a URL to job events",
    {"200": ok(WEBHOOK, "the subscription, with its `secret` (answered this once)"),
     "400": use("BadRequest")},
    body=request_body(_SUBSCRIBING, "`url` and `events` are required"),
    description="Each event of a job it wants (of `function` or `schedule` only, if given) "
                "is POSTed to `url`, signed with `secret`, at least once, retried with backoff "
                "(docs/webhooks.md). It applies to job events from within a second on.",
    links=links("$response.body#/id", "id", "getWebhook", "deleteWebhook",
                "listWebhookDeliveries")))
async def create_webhook(request: web.Request) -> web.Response:
    body = json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "webhook")
    wanted = Subscribing.read(body)
    await blocking(_check_exist, request, wanted)
    created = await blocking(_book(request).create, wanted.url, wanted.events, wanted.secret,
                             wanted.function, wanted.schedule, identity(request).submitter)
    return web.json_response(to_json(WebhookInfo.of(created, with_secret=True)))


@endpoints.get("/v2/api/webhooks/{id}", ADMIN, Op(
    "getWebhook", "webhooks", "One webhook", {"200": ok(WEBHOOK), "404": use("NotFound")},
    parameters=[_ID]))
async def get_webhook(request: web.Request) -> web.Response:
    found = await blocking(_book(request).get, request.match_info["id"])
    return web.json_response(to_json(WebhookInfo.of(found)))


@endpoints.delete("/v2/api/webhooks/{id}", ADMIN, Op(
    "deleteWebhook", "webhooks", "Delete a webhook",
    {"200": ok(WEBHOOK, "the deleted subscription"), "404": use("NotFound")},
    parameters=[_ID], description="Its deliveries not yet made are dropped; the record of "
                                  "those made stays."))
async def delete_webhook(request: web.Request) -> web.Response:
    deleted = await blocking(_book(request).delete, request.match_info["id"])
    return web.json_response(to_json(WebhookInfo.of(deleted)))


@endpoints.get("/v2/api/webhooks/{id}/deliveries", ADMIN, Op(
    "listWebhookDeliveries", "webhooks", "A webhook's deliveries, with every attempt",
    {"200": ok(array(DELIVERY), "newest first"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[_ID, _LIMIT]))
async def webhook_deliveries(request: web.Request) -> web.Response:
    book = _book(request)
    webhook_id = request.match_info["id"]
    await blocking(book.get, webhook_id)
    found = await blocking(book.deliveries, webhook_id, None, _limit(request))
    return web.json_response([to_json(DeliveryInfo.of(d, a)) for d, a in found])


@endpoints.get("/v2/api/jobs/{id}/deliveries", ADMIN, Op(
    "listJobDeliveries", "webhooks", "A job's deliveries (webhooks and its callbackUrl)",
    {"200": ok(array(DELIVERY), "newest first"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[JOB_ID_PARAM, _LIMIT]))
async def job_deliveries(request: web.Request) -> web.Response:
    job = visible(request, await blocking(request.app[STORE].get_job, request.match_info["id"]))
    found = await blocking(_book(request).deliveries, None, job.id, _limit(request))
    return web.json_response([to_json(DeliveryInfo.of(d, a)) for d, a in found])


def _limit(request: web.Request) -> int:
    return query_int(request, "limit", 50, 0, MAX_DELIVERIES)


def _check_exist(request: web.Request, wanted: Subscribing) -> None:
    """A subscription to a function or schedule that does not exist would never fire."""
    catalog = request.app[CATALOG]
    lookups = (("function", wanted.function, catalog.get_function),
               ("schedule", wanted.schedule, ScheduleBook(catalog.engine, catalog).get))
    for field, name, look_up in lookups:
        if name is None:
            continue
        try:
            look_up(name)
        except NotFound as exc:
            raise BadRequest(f"webhook: {field}: {exc.message}",
                             {"field": field, "expected": f"an existing {field}",
                              "got": name}) from None
