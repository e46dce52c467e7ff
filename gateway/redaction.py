"""Spark settings that look secret are shown to admins only.

A context's sparkConf often holds credentials (``spark.hadoop.fs.s3a.secret.key``, a key
store's password, an Azure account key). Settings whose key matches ``SECRET_CONF_KEY`` are
shown as ``REDACTED`` (the marker the Spark UI shows) to every caller but admins, wherever
sparkConf appears: contexts, and the workers' ``initInfo``. The pattern is Spark's own default
``spark.redaction.regex`` (secret, password, token, access key), widened to other credentials
that Spark and Hadoop settings carry; a false positive hides a harmless value, nothing more.

Only admins write contexts, and they read the real values, so what they read can be written
back as is; the marker itself is refused as a value (contexts.py), so a copy of a redacted
view can never replace a secret with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SECRET_CONF_KEY = re.compile(
    r"secret|passw(or)?d|token|credential|private|jaas"
    r"|(access|account|api|encryption)[._-]?key",
    re.IGNORECASE)
REDACTED = "*********(redacted)"


def spark_conf_shown(conf: Mapping[str, str], reveal: bool) -> dict[str, str]:
    """``conf`` as a caller sees it: as it is when ``reveal``, else with secrets redacted."""
    if reveal:
        return dict(conf)
    return {key: REDACTED if SECRET_CONF_KEY.search(key) else value
            for key, value in conf.items()}
