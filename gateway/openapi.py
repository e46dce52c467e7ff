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

from sparkgate.jobs.booleans import FALSE_WORDS, TRUE_WORDS

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
BOOLEAN_QUERY = (rf"^{WS}*(" + "|".join(_any_case(w) for w in (*TRUE_WORDS, *FALSE_WORDS))
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
    "withLogs": bool_param("withLogs", "also send `logs` events"),
    "force": bool_param("force", "see the operation"),
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
