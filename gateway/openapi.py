"""The pieces of the OpenAPI 3.1 document (``GET /v2/api/openapi.json``) that routes declare
their operations with: the schemas of what goes in and out (Mist's shapes where its contract
fixes them), reusable parameters and responses.

Each route's operation (``Op``) sits on its handler (gateway/routing.py);
gateway/openapi_document.py assembles the document from them and adds by rule what every
operation of a kind can answer.

Constraints are written as the gateway enforces them, no tighter and no looser: schemathesis
sends what the document calls invalid and expects a 4xx.
"""

from __future__ import annotations

from typing import Any

from sparkgate.gateway.wire.artifacts import ARTIFACT
from sparkgate.gateway.wire.contexts import CONTEXT, CONTEXT_DEFINITION, CONTEXT_REPLACEMENT
from sparkgate.gateway.wire.functions import FUNCTION_DEFINITION, FUNCTION_INFO
from sparkgate.gateway.wire.jobs import (
    JOB_DETAILS,
    JOB_ID,
    JOB_PAGE,
    SYNC_RESULT,
    WAIT_PENDING,
)
from sparkgate.gateway.wire.schema import (
    DURATION_PATTERN,
    DURATION_TEXT,
    INT,
    STRING,
    TIME_MS,
    WS,
    Schema,
    any_case,
    array,
    obj,
    ref,
)
from sparkgate.gateway.wire.workers import WORKER
from sparkgate.jobs.booleans import FALSE_WORDS, TRUE_WORDS

OPENAPI_PATH = "/v2/api/openapi.json"
DOCS_PATH = "/docs"

MAX_JOB_LIMIT = 1000
MIST_STATUSES = ("initialized", "queued", "started", "job-file-downloading", "cancelling",
                 "finished", "cancelled", "failed")
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


# gateway/params.py: query_bool (stripped, any case; empty is false).
BOOLEAN_QUERY = (rf"^{WS}*(" + "|".join(any_case(w) for w in (*TRUE_WORDS, *FALSE_WORDS))
                 + rf")?{WS}*$")

STATS_DURATION: Schema = {**DURATION_TEXT, "pattern": f"^$|{DURATION_PATTERN}",
                          "description": "a duration; empty is the default"}

# ---------------------------------------------------------------------------------------------
# Schemas

ERROR = obj({"error": obj({
    "code": {"type": "string", "description": "machine-readable: bad_request, "
             "invalid_arguments, invalid_artifact, wrong_engine, not_found, method_not_allowed, "
             "conflict, illegal_transition, payload_too_large, unauthenticated, forbidden, "
             "too_many_requests, unavailable, internal"},
    "message": {"type": "string", "description": "what went wrong and what to fix"},
    "details": {"description": "an object, a list of {field, expected, got}, or null"},
})}, description="Every error of sparkgate's own has this shape.")

MIST_TYPE: Schema = {
    "type": "object",
    "description": "Mist's argument type",
    "properties": {
        "type": {"enum": ["MInt", "MDouble", "MString", "MBoolean", "MAny", "MList", "MOption",
                          "MMap", "MObj"]},
        "args": array(ref("MistType")),
        "fields": {"type": "object", "additionalProperties": ref("MistType")},
    },
    "required": ["type"],
    "additionalProperties": False,
}

PROGRESS = obj({
    "jobs": obj({"done": INT, "total": INT}),
    "stages": obj({"done": INT, "total": INT}),
    "tasks": obj({"done": INT, "total": INT, "active": INT, "failed": INT}),
    "percent": {"type": "number", "minimum": 0, "maximum": 100},
}, {"streaming": {"type": "object", "required": ["kind", "active"],
                  "properties": {"kind": {"enum": ["query", "dstream"]},
                                 "active": {"type": "boolean"}},
                  "description": "*sparkgate*: a streaming job's stream progress "
                                 "(docs/streaming.md)"}},
   description="what Spark has done for the job")

TRUNCATED = obj({"truncated": {"const": True}, "bytes": {"type": "integer", "minimum": 0},
                 "url": STRING},
                description="*sparkgate*: stands in, in a listing, for a job's arguments or "
                            "result too big to list: `bytes`, the size of its JSON; `url`, the "
                            "job, which has it in full")


STATUS = obj({
    "mistVersion": STRING,
    "sparkgateVersion": STRING,
    "sparkVersion": STRING,
    "started": TIME_MS,
    "javaVersion": obj({"runtimeVersion": STRING, "vmVersion": STRING}),
    "pythonVersion": STRING,
    "database": {"enum": ["sqlite", "postgresql"]},
    "workers": INT,
    "syncWaiters": INT,
})

_ENDED_COUNTS = {"finished": INT, "failed": INT, "cancelled": INT}
_PERCENTILES = obj({"count": INT, "p50": {"type": ["number", "null"]},
                    "p95": {"type": ["number", "null"]}})
STATS = obj({
    "from": TIME_MS,
    "to": TIME_MS,
    "windowMs": INT,
    "bucketMs": INT,
    "runLookbackMs": INT,
    "buckets": array(obj({"time": TIME_MS, "submitted": INT, **_ENDED_COUNTS,
                          "runTime": _PERCENTILES})),
    "totals": obj({"submitted": INT, **_ENDED_COUNTS}),
    "runTime": {"type": "object", "description": "run-time percentiles over the window"},
    "active": obj({"queued": INT, "started": INT, "cancelling": INT}),
})

INDEX = obj({"name": STRING, "ui": STRING, "api": STRING, "status": STRING,
             "functions": STRING, "jobs": STRING})

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR,
    "MistType": MIST_TYPE,
    "FunctionInfo": FUNCTION_INFO,
    "FunctionDefinition": FUNCTION_DEFINITION,
    "Progress": PROGRESS,
    "JobDetails": JOB_DETAILS,
    "Truncated": TRUNCATED,
    "JobPage": JOB_PAGE,
    "JobId": JOB_ID,
    "SyncResult": SYNC_RESULT,
    "WaitPending": WAIT_PENDING,
    "ContextDefinition": CONTEXT_DEFINITION,
    "ContextReplacement": CONTEXT_REPLACEMENT,
    "Context": CONTEXT,
    "Worker": WORKER,
    "Artifact": ARTIFACT,
    "Status": STATUS,
    "Stats": STATS,
    "Index": INDEX,
}

# ---------------------------------------------------------------------------------------------
# Parameters


def path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or STRING}


def query_param(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


def bool_param(name: str, description: str) -> Schema:
    return query_param(name, {"type": "string", "pattern": BOOLEAN_QUERY, "default": "false"},
                       f"{description}. `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any "
                       "case; empty is false")


def text_param(name: str, description: str) -> Schema:
    return query_param(name, {"type": "string", "maxLength": 255, "pattern": NO_CONTROL},
                       f"{description} (at most 255 characters, no control characters; empty "
                       "is as absent)")


def duration_param(name: str, description: str) -> Schema:
    return query_param(name, DURATION_TEXT, description)


# gateway/routes/events.py: query_values splits on commas and strips each value.
_FILTER_VALUE = rf"{WS}*[^\x00-\x1f\x7f,]*?{WS}*"
FILTER_VALUES = rf"^{_FILTER_VALUE}(,{_FILTER_VALUE})*$"


def filter_param(name: str, description: str) -> Schema:
    return query_param(name, array({"type": "string", "pattern": FILTER_VALUES}),
                       f"{description}: repeat it or separate values with commas (at most 100 "
                       "values of at most 255 characters each, no control characters; spaces "
                       "around them are dropped)", style="form", explode=True)


_STATUS_WORD = "|".join(MIST_STATUSES)
PARAMETERS: dict[str, Schema] = {
    "limit": query_param("limit", {"type": "integer", "minimum": 0,
                                   "maximum": MAX_JOB_LIMIT, "default": 25}, "jobs to answer"),
    "offset": query_param("offset", {"type": "integer", "minimum": 0, "maximum": 10**9,
                                     "default": 0}, "jobs to skip"),
    "status": query_param("status", array({
        "type": "string",
        "pattern": rf"^{WS}*({_STATUS_WORD})?{WS}*(,{WS}*({_STATUS_WORD})?{WS}*)*$",
    }), "only jobs in these statuses (" + ", ".join(MIST_STATUSES) + "): repeat it or "
        "separate with commas", style="form", explode=True),
    "paginate": bool_param("paginate", "Mist's: answer `{jobs, total}` instead of a bare list"),
    "jobContext": text_param("context", "*sparkgate*: jobs of this context"),
    "jobFunction": text_param("function", "*sparkgate*: jobs of this function"),
    "jobExternalId": text_param("externalId", "*sparkgate*: jobs with this external id"),
    "jobSchedule": text_param("schedule", "*sparkgate*: jobs of this schedule"),
    "withLogs": bool_param("withLogs", "also send `logs` events"),
    "force": bool_param("force", "see the operation"),
}


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


JOB_LIST_PARAMS = [param(p) for p in ("limit", "offset", "status", "paginate", "jobContext",
                                      "jobExternalId", "jobSchedule")]

# ---------------------------------------------------------------------------------------------
# Responses

RETRY_AFTER = {"description": "seconds to wait before retrying",
               "schema": {"type": "integer", "minimum": 0}}


def error(description: str, retry: bool = False) -> Schema:
    response: Schema = {"description": description,
                        "content": {"application/json": {"schema": ref("Error")}}}
    if retry:
        response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    return response


RESPONSES: dict[str, Schema] = {
    "BadRequest": error("a malformed request: what to fix is in `message`, per field in "
                        "`details`"),
    "NotFound": error("no such thing (or a name or id holding a control character)"),
    "Conflict": error("it exists, is in use, or has ended"),
    "PayloadTooLarge": error("the body is over its limit"),
    "Unauthenticated": {**error("no credentials, or credentials that are not valid: a Bearer "
                                "API key or JWT is needed"),
                        "headers": {"WWW-Authenticate": {
                            "required": True, "schema": STRING,
                            "description": '`Bearer realm="sparkgate"`, with '
                                           '`error="invalid_token"` when credentials came but '
                                           'were refused'}}},
    "Forbidden": error("the credentials' role does not allow this, or (`cross_site_request`) "
                       "a browser says a page of another site sent it"),
    "UnsupportedMediaType": error("a `Content-Encoding` other than gzip and deflate"),
    "MisdirectedRequest": error("a `Host` this gateway does not answer to (`allowed_hosts`)"),
    "UriTooLong": error("a request line (method, path, query) over 8190 bytes"),
    "HeaderTooLarge": error("a request header over 8190 bytes"),
    "TooManyRequests": error("a limit was reached; retry after `Retry-After` seconds",
                             retry=True),
    "Unavailable": error("the database or Redis cannot be reached; retry after `Retry-After` "
                         "seconds", retry=True),
}


def ok(schema: Schema | None = None, description: str = "OK", media: str = "application/json",
       headers: dict[str, Schema] | None = None) -> Schema:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def use(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def redirect(to: str) -> Schema:
    return {"description": f"to `{to}`", "headers": {"Location": {
        "required": True, "schema": {"type": "string", "const": to}}}}


# ---------------------------------------------------------------------------------------------
# Operations


def links(expression: str, parameter: str, *operation_ids: str) -> dict[str, Schema]:
    """One link per operation: its ``parameter`` is the answer's ``expression``."""
    return {operation_id: {"operationId": operation_id, "parameters": {parameter: expression}}
            for operation_id in operation_ids}


FUNCTION_NAME = path_param("name", "the function's name")
CONTEXT_NAME = path_param("name", "the context's name")
ARTIFACT_NAME = path_param("name", "the artifact's name")
JOB_ID_PARAM = path_param("id", "the job's id")
WORKER_ID = path_param("id", "the worker's id")


def request_body(schema: Schema, description: str, required: bool = True) -> Schema:
    return {"required": required, "description": description,
            "content": {"application/json": {"schema": schema}}}



# The dashboard's and the documentation page's files (gateway/routes/ui.py, docs.py).
PAGE_FILE = path_param("path", "a file under the folder", {"type": "string"})
UNCHANGED = {"304": {"description": "unchanged since the ETag given in If-None-Match"}}
HTML_PAGE = ok({"type": "string"}, "the page", "text/html")
PAGE_FILE_ANSWERS = {"200": ok({"type": "string"}, "the file, with its content type", "*/*"),
                     **UNCHANGED, "404": use("NotFound")}
