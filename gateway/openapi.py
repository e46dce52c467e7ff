"""The OpenAPI 3.1 document of every route the gateway serves (``GET /v2/api/openapi.json``).

Built from small pieces of Python data: the schemas of what goes in and out (Mist's shapes where
its contract fixes them), reusable parameters and responses, then one entry per operation.
Responses every operation of a kind can give are added by rule, not by hand: ``503`` (with
``Retry-After``) wherever the database or Redis is read, ``413`` wherever a body is read,
``401``/``403`` on every operation the auth rules protect, and a ``HEAD`` twin for every ``GET``
(aiohttp answers both). ``tests/test_openapi.py`` fails when the router and this document differ.

Constraints are written as the gateway enforces them, no tighter and no looser: schemathesis
sends what the document calls invalid and expects a 4xx.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparkgate.gateway.browsers import ANY_HOST_PATHS

Schema = dict[str, Any]

OPENAPI_PATH = "/v2/api/openapi.json"
DOCS_PATH = "/docs"

#: Longest duration the gateway takes (jobs/durations.py: MAX_SECONDS), in seconds.
MAX_DURATION_S = 100 * 365 * 86400
MAX_JOB_LIMIT = 1000
MIST_STATUSES = ("initialized", "queued", "started", "job-file-downloading", "cancelling",
                 "finished", "cancelled", "failed")
JOB_STATUSES = ("queued", "started", "cancelling", "finished", "cancelled", "failed")

# A name of a function, context or artifact (gateway/params.py: checked_name).
NAME = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$"
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *,
        closed: bool = True, description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})},
                      "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
TIME_MS: Schema = {"type": "integer", "description": "epoch milliseconds"}
ANY: Schema = {}
NAME_STRING: Schema = {"type": "string", "pattern": NAME}
_UNITS = ("ms", "s", "sec", "second", "seconds", "m", "min", "minute", "minutes", "h", "hour",
          "hours", "d", "day", "days")
_UNBOUNDED = ("inf", "infinite", "unbounded")


# What Python's str.strip() and re's \s take for whitespace, spelled out: a JSON Schema
# validator's \s (ECMA-262) leaves out \x1c-\x1f and \x85, so the two would disagree.
WS = ("[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029"
      "\\u202f\\u205f\\u3000]")


def _any_case(word: str) -> str:
    """Case-insensitive words are spelled out: JSON Schema patterns have no flags."""
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


# gateway/params.py: query_bool (stripped, any case; empty is false).
BOOLEAN_QUERY = (rf"^{WS}*(" + "|".join(_any_case(w) for w in
                                     ("true", "1", "yes", "on", "false", "0", "no", "off"))
                 + rf")?{WS}*$")


# jobs/durations.py reads these.
DURATION_PATTERN = (rf"^{WS}*([0-9]+(\.[0-9]+)?{WS}*({'|'.join(_any_case(u) for u in _UNITS)})?"
                    rf"|{'|'.join(_any_case(w) for w in _UNBOUNDED)}){WS}*$")
DURATION_TEXT: Schema = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "description": "`500ms`, `10s`, `5min`, `1h`, `1d` (also `sec`, `m`, `minute(s)`, "
                   "`hour(s)`, `day(s)`), a bare number of seconds, or `Inf`; at most 100 years",
}
STATS_DURATION: Schema = {**DURATION_TEXT, "pattern": f"^$|{DURATION_PATTERN}",
                          "description": "a duration; empty is the default"}
DURATION_VALUE: Schema = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_DURATION_S}, DURATION_TEXT],
}

# ---------------------------------------------------------------------------------------------
# Schemas

ERROR = obj({"error": obj({
    "code": {"type": "string", "description": "machine-readable: bad_request, "
             "invalid_arguments, invalid_artifact, not_found, method_not_allowed, conflict, "
             "illegal_transition, payload_too_large, unauthenticated, forbidden, "
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

FUNCTION_INFO = obj({
    "name": STRING,
    "lang": {"const": "python"},
    "execute": {"type": "object", "additionalProperties": ref("MistType"),
                "description": "Mist's argument map, in declaration order"},
    "tags": array(STRING),
    "path": {"type": "string", "description": "the artifact"},
    "className": STRING,
    "defaultContext": STRING,
    "argumentsSchema": {"type": ["object", "null"], "description": "*sparkgate*: the "
                        "arguments as JSON Schema (2020-12); null when stored with force=true"},
}, description="Mist's FunctionInfo, plus argumentsSchema")

FUNCTION_DEFINITION = obj({
    "name": NAME_STRING,
    "path": {**NAME_STRING, "description": "an uploaded artifact"},
    "className": {"type": "string", "description": "a top-level function of the artifact "
                  "(identifier), or package.module.function"},
}, {
    "defaultContext": {"type": ["string", "null"], "description": "an existing context; "
                       "`default` when left out, empty or null"},
    "lang": {"const": "python"},
    "tags": array(STRING),
})

PROGRESS = obj({
    "jobs": obj({"done": INT, "total": INT}),
    "stages": obj({"done": INT, "total": INT}),
    "tasks": obj({"done": INT, "total": INT, "active": INT, "failed": INT}),
    "percent": {"type": "number", "minimum": 0, "maximum": 100},
}, description="what Spark has done for the job")

JOB_DETAILS = obj({
    "jobId": STRING,
    "function": STRING,
    "context": STRING,
    "params": obj({"filePath": STRING, "className": STRING,
                   "arguments": {"description": "the arguments; in a listing, a `Truncated` "
                                 "marker instead when larger than listing_value_max_bytes"},
                   "action": {"const": "execute"}}),
    "status": {"enum": list(JOB_STATUSES)},
    "source": {"type": "string", "description": "`Http`, `Cli`, `Async mqtt`, `Async ws`"},
    "createTime": TIME_MS,
}, {
    "externalId": STRING,
    "startTime": TIME_MS,
    "endTime": TIME_MS,
    "workerId": STRING,
    "jobResult": {"description": "the result when finished; the error text when failed; "
                  "in a listing, a `Truncated` marker instead when larger than "
                  "listing_value_max_bytes"},
    "progress": ref("Progress"),
    "startTimeout": {"type": "integer", "description": "milliseconds"},
    "performTimeout": {"type": "integer", "description": "milliseconds"},
    "submitter": {"type": "string", "description": "*sparkgate*: who submitted it: "
                  "`key:<name>`, `jwt:<subject>`, `mqtt` or `anonymous`"},
    "truncated": {"type": "array", "uniqueItems": True,
                  "items": {"enum": ["params.arguments", "jobResult"]},
                  "description": "*sparkgate*, listings only: the fields holding a `Truncated` "
                                 "marker"},
}, description="Mist's JobDetails; fields other than the first seven are left out while empty")

TRUNCATED = obj({"truncated": {"const": True}, "bytes": {"type": "integer", "minimum": 0},
                 "url": STRING},
                description="*sparkgate*: stands in, in a listing, for a job's arguments or "
                            "result too big to list: `bytes`, the size of its JSON; `url`, the "
                            "job, which has it in full")

JOB_PAGE = obj({"jobs": array(ref("JobDetails")), "total": {"type": "integer", "minimum": 0},
                "totalExact": {"type": "boolean", "description": "*sparkgate*: false when, "
                               "beyond 10,000 matches, total is PostgreSQL's estimate"}})
JOB_ID = obj({"id": STRING}, description="async submit: the job is queued")
SYNC_RESULT = obj({"success": {"type": "boolean"}, "payload": ANY, "errors": array(STRING)},
                  description="Mist's answer to force=true")
WAIT_PENDING = obj({"id": STRING, "status": {"enum": ["queued", "started", "cancelling"]},
                    "url": STRING}, description="wait= ran out before the job ended")

_SPARK_CONF_VALUES = {"type": "object",
                      "additionalProperties": {"type": ["string", "number", "boolean"]}}
_INT_1_1000 = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000},
                         {"type": "string", "pattern": rf"^{WS}*[0-9]+{WS}*$",
                          "description": "digits, 1 to 1000"}]}
_BOOL_VALUE = {"anyOf": [{"type": "boolean"}, {
    "type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"}]}
_CONTEXT_FIELDS = {
    "sparkConf": _SPARK_CONF_VALUES,
    "maxJobs": _INT_1_1000,
    "workerMode": {"enum": ["shared", "exclusive"]},
    "precreated": _BOOL_VALUE,
    "downtime": DURATION_VALUE,
    "maxConnFailures": _INT_1_1000,
    "runOptions": {"type": "string", "pattern": "^[^\\x00]*$", "description": "no NUL"},
    "streamingDuration": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 2**31 - 1},
                                    DURATION_TEXT],
                          "description": "finite, at most 2147483647s (68 years)"},
    "startTimeout": DURATION_VALUE,
    "performTimeout": DURATION_VALUE,
}
CONTEXT_DEFINITION = obj({"name": NAME_STRING}, _CONTEXT_FIELDS,
                         description="fields left out take the configured context defaults")
CONTEXT_REPLACEMENT = obj({}, {"name": {**STRING, "description": "if given, the path's name"},
                               **_CONTEXT_FIELDS})
CONTEXT = obj({
    "name": STRING,
    "sparkConf": {"type": "object", "additionalProperties": STRING},
    "maxJobs": INT,
    "workerMode": {"enum": ["shared", "exclusive"]},
    "precreated": {"type": "boolean"},
    "downtime": STRING,
    "maxConnFailures": INT,
    "runOptions": STRING,
    "streamingDuration": STRING,
    "startTimeout": STRING,
    "performTimeout": STRING,
    "state": {"enum": ["ok", "broken"]},
    "workerFailures": INT,
    "lastFailure": {"type": ["string", "null"]},
}, description="Mist's Context, plus job timeout defaults and health")

WORKER = obj({
    "name": STRING,
    "address": STRING,
    "context": STRING,
    "initInfo": obj({"sparkConf": {"type": "object", "additionalProperties": STRING},
                     "maxJobs": INT, "workerMode": STRING}),
    "startedAt": TIME_MS,
    "uptimeMs": INT,
    "heartbeatAt": TIME_MS,
    "runningJobs": {**array(STRING), "description": "the running jobs the caller may see "
                    "(a submit key: its own)"},
    "runningJobCount": {**INT, "description": "every running job, the caller's or not"},
    "jobsDone": INT,
    "state": {"enum": ["running", "draining"]},
    "drainReason": {"type": ["string", "null"]},
}, description="Mist's WorkerLink plus live state")

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
    "Status": STATUS,
    "Stats": STATS,
    "Index": INDEX,
}

# ---------------------------------------------------------------------------------------------
# Parameters


def path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or STRING}


def query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


def query_bool(name: str, description: str) -> Schema:
    return query(name, {"type": "string", "pattern": BOOLEAN_QUERY, "default": "false"},
                 f"{description}. `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case; "
                 "empty is false")


def query_text(name: str, description: str) -> Schema:
    return query(name, {"type": "string", "maxLength": 255, "pattern": NO_CONTROL},
                 f"{description} (at most 255 characters, no control characters; empty is "
                 "as absent)")


def query_duration(name: str, description: str) -> Schema:
    return query(name, DURATION_TEXT, description)


# gateway/routes/events.py: query_values splits on commas and strips each value.
_FILTER_VALUE = rf"{WS}*[^\x00-\x1f\x7f,]*?{WS}*"
FILTER_VALUES = rf"^{_FILTER_VALUE}(,{_FILTER_VALUE})*$"


def query_filter(name: str, description: str) -> Schema:
    return query(name, array({"type": "string", "pattern": FILTER_VALUES}),
                 f"{description}: repeat it or separate values with commas (at most 100 "
                 "values of at most 255 characters each, no control characters; spaces around "
                 "them are dropped)", style="form", explode=True)


_STATUS_WORD = "|".join(MIST_STATUSES)
PARAMETERS: dict[str, Schema] = {
    "limit": query("limit", {"type": "integer", "minimum": 0, "maximum": MAX_JOB_LIMIT,
                             "default": 25}, "jobs to answer"),
    "offset": query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9,
                               "default": 0}, "jobs to skip"),
    "status": query("status", array({
        "type": "string",
        "pattern": rf"^{WS}*({_STATUS_WORD})?{WS}*(,{WS}*({_STATUS_WORD})?{WS}*)*$",
    }), "only jobs in these statuses (" + ", ".join(MIST_STATUSES) + "): repeat it or "
        "separate with commas", style="form", explode=True),
    "paginate": query_bool("paginate", "Mist's: answer `{jobs, total}` instead of a bare list"),
    "jobContext": query_text("context", "*sparkgate*: jobs of this context"),
    "jobFunction": query_text("function", "*sparkgate*: jobs of this function"),
    "jobExternalId": query_text("externalId", "*sparkgate*: jobs with this external id"),
    "withLogs": query_bool("withLogs", "also send `logs` events"),
    "force": query_bool("force", "see the operation"),
}


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


JOB_LIST_PARAMS = [param(p) for p in ("limit", "offset", "status", "paginate", "jobContext",
                                      "jobExternalId")]

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


@dataclass
class Op:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    responses: dict[str, Schema]
    description: str = ""
    parameters: list[Schema] = field(default_factory=list)
    body: Schema | None = None
    #: Reads the database or Redis: may answer 503.
    backed: bool = True
    #: The event streams also take their credentials as ``?access_token=``.
    stream: bool = False
    #: OpenAPI links from a 200 answer to the operations that take what it names: tools
    #: (schemathesis's stateful phase) chain calls through them.
    links: dict[str, Schema] = field(default_factory=dict)


def links(expression: str, parameter: str, *operation_ids: str) -> dict[str, Schema]:
    """One link per operation: its ``parameter`` is the answer's ``expression``."""
    return {operation_id: {"operationId": operation_id, "parameters": {parameter: expression}}
            for operation_id in operation_ids}


FUNCTION_NAME = path_param("name", "the function's name")
CONTEXT_NAME = path_param("name", "the context's name")
ARTIFACT_NAME = path_param("name", "the artifact's name")
JOB_ID_PARAM = path_param("id", "the job's id")
WORKER_ID = path_param("id", "the worker's id")


def json_body(schema: Schema, description: str, required: bool = True) -> Schema:
    return {"required": required, "description": description,
            "content": {"application/json": {"schema": schema}}}


def _functions() -> list[Op]:
    definition = json_body(ref("FunctionDefinition"), "the function: `path` names an uploaded "
                           "artifact, `className` a function in it")
    force = query_bool("force", "store without reading the artifact (no argument schema)")
    return [
        Op("get", "/v2/api/functions", "listFunctions", "functions", "List functions",
           {"200": ok(array(ref("FunctionInfo")), "every function, sorted by name")}),
        Op("get", "/v2/api/functions/{name}", "getFunction", "functions", "One function",
           {"200": ok(ref("FunctionInfo")), "404": use("NotFound")}, parameters=[FUNCTION_NAME]),
        Op("post", "/v2/api/functions", "createFunction", "functions", "Create a function",
           {"200": ok(ref("FunctionInfo"), "the new function"),
            "400": use("BadRequest")}, parameters=[force], body=definition,
           description="The artifact's source is read (never run) for the function and its "
                       "argument schema. `400` if the name exists, the artifact or context "
                       "does not, or the artifact lacks the function.",
           links=links("$response.body#/name", "name", "getFunction", "runFunction",
                       "listFunctionJobs", "deleteFunction")),
        Op("put", "/v2/api/functions", "updateFunction", "functions", "Update a function",
           {"200": ok(ref("FunctionInfo"), "the updated function"), "400": use("BadRequest"),
            "404": use("NotFound")}, parameters=[force], body=definition,
           description="Replaces the function of that `name`; `404` if there is none."),
        Op("delete", "/v2/api/functions/{name}", "deleteFunction", "functions",
           "Delete a function", {"200": ok(ref("FunctionInfo"), "the deleted function"),
                                 "404": use("NotFound")}, parameters=[FUNCTION_NAME]),
    ]


def _running() -> list[Op]:
    return [Op(
        "post", "/v2/api/functions/{name}/jobs", "runFunction", "jobs", "Run a function",
        {
            "200": ok({"anyOf": [ref("JobId"), ref("SyncResult"), ref("JobDetails")]},
                      "async: `{id}` once queued; `force=true`: Mist's `{success, payload, "
                      "errors}` once ended (a failed job too); `wait=`: the ended job"),
            "202": ok(ref("WaitPending"), "`wait=` ran out before the job ended",
                      headers={"Location": {"required": True, "schema": STRING,
                                            "description": "the job"}}),
            "400": use("BadRequest"), "404": use("NotFound"), "409": use("Conflict"),
            "429": use("TooManyRequests"),
        },
        description="Arguments are checked against the function's schema before anything is "
                    "recorded (`400 invalid_arguments` lists every problem). `429` when the "
                    "context already has `max_queued_per_context` jobs waiting, or the "
                    "submitter is over `submits_per_second`.",
        parameters=[
            FUNCTION_NAME,
            query_bool("force", "Mist's sync call: answer when the job has ended"),
            query_duration("wait", "*sparkgate*: wait at most this long for the end; `202` "
                                   "if it has not ended by then"),
            query_text("context", "run in this context instead of the function's default"),
            query_text("externalId", "your own id for the job; a repeated submit with the same "
                                     "id answers the job it created"),
            query_duration("startTimeout", "fail the job if it waits longer in the queue"),
            query_duration("performTimeout", "fail the job if it runs longer"),
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": STRING,
             "description": "a retry with the same key (per submitter and function) answers "
                            "the job the first request created; with other arguments or "
                            "context, `409`. Without it, `externalId` plays that part"},
        ],
        body=json_body({"type": "object", "description": "the function's arguments"},
                       "the arguments (an empty body is `{}`)", required=False),
        links=links("$response.body#/id", "id", "getJob", "getJobLogs", "cancelJob"),
    )]


def _jobs() -> list[Op]:
    page = {"anyOf": [array(ref("JobDetails")), ref("JobPage")]}
    listed = "newest first: a bare list, or `{jobs, total}` with `paginate=true`"
    return [
        Op("get", "/v2/api/jobs", "listJobs", "jobs", "List jobs",
           {"200": ok(page, listed), "400": use("BadRequest")},
           parameters=[*JOB_LIST_PARAMS, param("jobFunction")]),
        Op("get", "/v2/api/functions/{name}/jobs", "listFunctionJobs", "jobs",
           "A function's jobs", {"200": ok(page, listed), "400": use("BadRequest"),
                                 "404": use("NotFound")},
           parameters=[FUNCTION_NAME, *JOB_LIST_PARAMS]),
        Op("get", "/v2/api/workers/{id}/jobs", "listWorkerJobs", "jobs", "A worker's jobs",
           {"200": ok(page, listed), "400": use("BadRequest")},
           parameters=[WORKER_ID, *JOB_LIST_PARAMS, param("jobFunction")],
           description="Jobs a worker took, live or not."),
        Op("get", "/v2/api/jobs/{id}", "getJob", "jobs", "One job",
           {"200": ok(ref("JobDetails")), "404": use("NotFound")}, parameters=[JOB_ID_PARAM]),
        Op("get", "/v2/api/jobs/{id}/logs", "getJobLogs", "jobs", "A job's log",
           {"200": ok({"type": "string"}, "one line per record: `LEVEL ISO-time [job id] "
                      "message`; empty while none", "text/plain"), "404": use("NotFound")},
           parameters=[JOB_ID_PARAM]),
        Op("delete", "/v2/api/jobs/{id}", "cancelJob", "jobs", "Cancel a job",
           {"200": ok(ref("JobDetails"), "the job: `cancelled`, or `cancelling` while its "
                      "worker stops it"), "404": use("NotFound"),
            "409": use("Conflict")}, parameters=[JOB_ID_PARAM]),
    ]


def _contexts() -> list[Op]:
    return [
        Op("get", "/v2/api/contexts", "listContexts", "contexts", "List contexts",
           {"200": ok(array(ref("Context")), "sorted by name, `default` included")}),
        Op("get", "/v2/api/contexts/{name}", "getContext", "contexts", "One context",
           {"200": ok(ref("Context")), "404": use("NotFound")}, parameters=[CONTEXT_NAME]),
        Op("post", "/v2/api/contexts", "saveContext", "contexts", "Create or replace a context",
           {"200": ok(ref("Context"), "the stored context"), "400": use("BadRequest")},
           body=json_body(ref("ContextDefinition"), "the context; only `name` is required"),
           description="As Mist's: replaces a context of that name. Its workers drain and "
                       "restart with the new definition.",
           links=links("$response.body#/name", "name", "getContext", "replaceContext",
                       "deleteContext")),
        Op("put", "/v2/api/contexts/{name}", "replaceContext", "contexts",
           "Replace a context (and repair it)",
           {"200": ok(ref("Context"), "the stored context"), "400": use("BadRequest"),
            "404": use("NotFound")}, parameters=[CONTEXT_NAME],
           body=json_body(ref("ContextReplacement"), "the whole definition")),
        Op("delete", "/v2/api/contexts/{name}", "deleteContext", "contexts", "Delete a context",
           {"200": ok(ref("Context"), "the deleted context"),
            "400": use("BadRequest"), "404": use("NotFound"), "409": use("Conflict")},
           parameters=[CONTEXT_NAME],
           description="`400` for `default`; `409` while a function has it as its default."),
    ]


def _workers() -> list[Op]:
    return [
        Op("get", "/v2/api/workers", "listWorkers", "workers", "Live workers",
           {"200": ok(array(ref("Worker")), "sorted by id")}),
        Op("get", "/v2/api/workers/{id}", "getWorker", "workers", "One live worker",
           {"200": ok(ref("Worker")), "404": use("NotFound")}, parameters=[WORKER_ID]),
        Op("delete", "/v2/api/workers/{id}", "stopWorker", "workers",
           "Drain and stop a live worker",
           {"200": ok(ref("Worker"), "the worker, `state` `draining`"), "404": use("NotFound")},
           parameters=[WORKER_ID]),
    ]


def _artifacts() -> list[Op]:
    sha1 = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
    upload = {"required": True, "description": "the file in the field `file`; its file name is "
              "the artifact's name (a name ending in `.py`)",
              "content": {"multipart/form-data": {
                  "schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary",
                               "contentMediaType": "application/octet-stream"}}},
                  "encoding": {"file": {"contentType": "application/octet-stream, text/x-python"}},
              }}}
    return [
        Op("get", "/v2/api/artifacts", "listArtifacts", "artifacts", "List artifact names",
           {"200": ok(array(STRING), "names, sorted")}),
        Op("get", "/v2/api/artifacts/{name}", "downloadArtifact", "artifacts",
           "Download an artifact",
           {"200": ok({"type": "string", "format": "binary"}, "the file",
                      "application/octet-stream",
                      {"Content-Disposition": {"required": True, "schema": STRING},
                       "ETag": {"required": True, "schema": STRING,
                                "description": "the quoted SHA-1"}}),
            "404": use("NotFound")}, parameters=[ARTIFACT_NAME]),
        Op("get", "/v2/api/artifacts/{name}/sha", "artifactSha", "artifacts",
           "An artifact's SHA-1", {"200": ok(sha1, "hex", "text/plain"), "404": use("NotFound")},
           parameters=[ARTIFACT_NAME]),
        Op("post", "/v2/api/artifacts", "uploadArtifact", "artifacts", "Upload an artifact",
           {"200": ok({"type": "string"}, "the stored name, as Mist answered", "text/plain",
                      {"X-Artifact-Sha1": {"required": True, "schema": sha1}}),
            "400": use("BadRequest"), "409": use("Conflict")},
           parameters=[query_bool("force", "replace an artifact of that name")], body=upload,
           description="Parsed, never run. `409` if the name exists (unless `force=true`); "
                       "replacing it re-reads the schemas of the functions that use it.",
           links=links("$response.body", "name", "downloadArtifact", "artifactSha",
                       "deleteArtifact")),
        Op("delete", "/v2/api/artifacts/{name}", "deleteArtifact", "artifacts",
           "Delete an artifact",
           {"200": ok(obj({"name": STRING, "sha1": sha1}), "what was deleted"),
            "404": use("NotFound"), "409": use("Conflict")}, parameters=[ARTIFACT_NAME],
           description="`409` while functions use it (`details.functions` lists them)."),
    ]


def _status() -> list[Op]:
    return [
        Op("get", "/v2/api/status", "status", "status", "Versions and counters",
           {"200": ok(ref("Status"))}),
        Op("get", "/v2/api/stats", "stats", "status", "Jobs per bucket over a window",
           {"200": ok(ref("Stats")), "400": use("BadRequest")}, parameters=[
               query("window", STATS_DURATION, "how far back: 1s to 24h (default 1h)"),
               query("bucket", STATS_DURATION, "bucket size: at least 1s, at most the window, "
                                               "at most 1440 buckets (default 1min)"),
           ]),
        Op("get", "/health", "health", "status", "Liveness",
           {"200": ok(obj({"status": {"const": "ok"}}),
                      "serving, and Redis and the database answer (503 when either does not)")}),
        Op("get", "/", "index", "status", "Links to the main resources",
           {"200": ok(ref("Index")), "302": redirect("/ui/")}, backed=False,
           description="A browser (`Accept: text/html`) is sent to the dashboard.",
           parameters=[{"name": "Accept", "in": "header", "required": False,
                        "schema": STRING}]),
    ]


def _events() -> list[Op]:
    job_filter = [
        query_filter("job", "only these jobs"),
        query_filter("function", "only jobs of these functions"),
        query_filter("context", "only jobs of these contexts"),
    ]
    # A client (API key; address with authentication off) holds max_streams_per_client.
    too_many = {"429": use("TooManyRequests")}
    upgrade = {"101": ok(None, "switched to a WebSocket: one JSON job event per message, "
                               "`keep-alive` every 60 s"),
               "400": use("BadRequest"), **too_many}
    return [
        Op("get", "/v2/api/ws/all", "wsAll", "events", "Every job's events (WebSocket)",
           upgrade,
           parameters=[param("withLogs")], stream=True,
           description="Mist's event socket. `400` for a request that is not a WebSocket "
                       "handshake; `429` when the caller holds its limit of event streams "
                       "(`max_streams_per_client`). A client that stops reading is sent a "
                       "`dropped` event and closed (1013) once `stream_buffer_max_bytes` wait "
                       "for it."),
        Op("get", "/v2/api/ws/jobs/{id}", "wsJob", "events", "One job's events (WebSocket)",
           {**upgrade, "404": use("NotFound")},
           parameters=[JOB_ID_PARAM, param("withLogs")], stream=True,
           description="Closes after the job's end event; for an ended job, sends it at once."),
        Op("get", "/v2/api/events", "events", "events", "Job events (Server-Sent Events)",
           {"200": ok({"type": "string"}, "`id: n`, `event: <name>`, `data: <json>` per "
                      "event; `: keep-alive` every 15 s; live only", "text/event-stream"),
            "400": use("BadRequest"), **too_many},
           parameters=[*job_filter, param("withLogs")], stream=True),
    ]


def _pages() -> list[Op]:
    page_file = path_param("path", "a file under the folder", {"type": "string"})
    unchanged = {"304": {"description": "unchanged since the ETag given in If-None-Match"}}
    static = {**unchanged, "404": use("NotFound")}
    html = ok({"type": "string"}, "the page", "text/html")
    return [
        Op("get", "/ui", "dashboardRedirect", "pages", "The dashboard", {"302": redirect("/ui/")},
           backed=False),
        Op("get", "/ui/", "dashboard", "pages", "The dashboard", {"200": html, **unchanged},
           backed=False),
        Op("get", "/ui/{path}", "dashboardFile", "pages", "A file of the dashboard",
           {"200": ok({"type": "string"}, "the file, with its content type", "*/*"), **static},
           parameters=[page_file], backed=False),
        Op("get", DOCS_PATH, "docs", "pages", "This API's documentation page",
           {"200": html, **unchanged}, backed=False),
        Op("get", DOCS_PATH + "/{path}", "docsFile", "pages", "A file of the documentation page",
           {"200": ok({"type": "string"}, "the file, with its content type", "*/*"), **static},
           parameters=[page_file], backed=False),
        Op("get", OPENAPI_PATH, "openapi", "pages", "This OpenAPI document",
           {"200": ok({"type": "object"}, "OpenAPI 3.1")}, backed=False),
    ]


def operations() -> list[Op]:
    return [*_functions(), *_running(), *_jobs(), *_contexts(), *_workers(), *_artifacts(),
            *_status(), *_events(), *_pages()]


TAGS = [
    {"name": "functions", "description": "Named Python callables in artifacts, with their "
                                         "argument schema"},
    {"name": "jobs", "description": "Running functions and following their jobs. With "
                                    "authentication on, a submit key sees, follows and cancels "
                                    "only its own jobs (another owner's is `404`, as if it did "
                                    "not exist); read and admin see every job"},
    {"name": "contexts", "description": "Spark settings and worker policy per context. "
                                        "Settings that look secret read "
                                        "`*********(redacted)` for all but admins"},
    {"name": "workers", "description": "Live workers, each holding a warm SparkSession"},
    {"name": "artifacts", "description": "The code functions run"},
    {"name": "status", "description": "Versions, counters, health"},
    {"name": "events", "description": "Live job events: Mist's WebSockets and SSE; a submit "
                                      "key's streams carry only its own jobs' events"},
    {"name": "pages", "description": "The dashboard, this documentation and this document"},
]

#: ``(method, path) -> role`` the auth rules require, or None for a public route.
RoleOf = Callable[[str, str], "str | None"]

# ---------------------------------------------------------------------------------------------
# Assembly


def build_document(version: str = "0", role_of: RoleOf | None = None) -> dict[str, Any]:
    """The whole document. ``role_of`` is given when authentication is on: then each protected
    operation says so (security, 401, 403)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations():
        item = paths.setdefault(op.path, {})
        operation = _operation(op, role_of)
        item[op.method] = operation
        if op.method == "get":
            item["head"] = _head_twin(op, operation)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sparkgate",
            "version": version,
            "description": "Spark functions as a web service: Hydrosphere Mist's HTTP API v2 "
                           "and sparkgate's extensions. Errors have one shape, "
                           "`{\"error\": {\"code\", \"message\", \"details\"}}`, except where "
                           "Mist's contract fixes another. Every GET also answers HEAD.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "parameters": copy.deepcopy(PARAMETERS),
            "responses": copy.deepcopy(RESPONSES),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an API key (`sparkgate keys create`) or a JWT"},
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token",
                                "description": "the same key or JWT, for the event streams "
                                               "only (browsers cannot set headers on them)"},
            },
        },
    }
    return document


def _operation(op: Op, role_of: RoleOf | None) -> dict[str, Any]:
    responses = {**_refusals(op), **op.responses}
    if op.body is not None:
        responses.setdefault("413", use("PayloadTooLarge"))
    if "{" in op.path:  # also a name or id holding a control character (path_middleware)
        responses.setdefault("404", use("NotFound"))
    if op.backed:
        responses.setdefault("503", use("Unavailable"))
    operation: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag],
                                 "summary": op.summary}
    if op.description:
        operation["description"] = op.description
    if op.parameters:
        operation["parameters"] = list(op.parameters)
    if op.body is not None:
        operation["requestBody"] = op.body
    role = role_of(op.method.upper(), op.path) if role_of is not None else None
    if role_of is not None:
        if role is None:
            operation["security"] = []
        else:
            operation["security"] = ([{"bearer": []}, {"accessToken": []}] if op.stream
                                     else [{"bearer": []}])
            operation["x-sparkgate-role"] = role
            responses.setdefault("401", use("Unauthenticated"))
            responses.setdefault("403", use("Forbidden"))
    if op.links:
        ok_response = dict(responses["200"])
        ok_response["links"] = op.links
        responses["200"] = ok_response
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _refusals(op: Op) -> dict[str, Schema]:
    """What any request may get before its route sees it: from the HTTP parser, for its form,
    and from gateway/browsers.py."""
    refusals = {"414": use("UriTooLong"), "431": use("HeaderTooLarge")}
    if op.body is not None:
        refusals["415"] = use("UnsupportedMediaType")
    if op.method != "get":  # a page of another site
        refusals["403"] = use("Forbidden")
    if op.path not in ANY_HOST_PATHS:
        refusals["421"] = use("MisdirectedRequest")
    return refusals


def _head_twin(op: Op, get: dict[str, Any]) -> dict[str, Any]:
    """HEAD answers as GET does, with the headers and no body."""
    head = {k: v for k, v in get.items() if k not in ("responses", "description")}
    head["operationId"] = op.operation_id + "Head"
    head["summary"] = f"{op.summary} (headers only)"
    head["responses"] = {status: _without_content(response)
                         for status, response in get["responses"].items()}
    return head


def _without_content(response: Schema) -> Schema:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = RESPONSES[name]
    return {k: v for k, v in response.items() if k != "content"}
