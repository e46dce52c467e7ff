"""Spark settings that look secret are shown to admins only.

A context's sparkConf often holds credentials (``spark.hadoop.fs.s3a.secret.key``, a key
store's password, an Azure account key, a connection URL with a password in it). Settings
whose key matches ``SECRET_CONF_KEY`` (or the ``secret_spark_conf_keys`` setting), or whose
value matches ``SECRET_CONF_VALUE``, are shown as ``REDACTED`` (the marker the Spark UI shows)
to every caller but admins, wherever sparkConf appears: contexts, and the workers'
``initInfo``. The key pattern is Spark's own default ``spark.redaction.regex`` (secret,
password, token, access key), widened to other credentials that Spark and Hadoop settings
carry; a false positive hides a harmless value, nothing more.

Only admins write contexts, and they read the real values, so what they read can be written
back as is; the marker itself is refused as a value (gateway/wire/contexts.py), so a copy of a
redacted view can never replace a secret with it. Who sees what: gateway/auth.py's
``redaction_for``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SECRET_CONF_KEY = re.compile(
    r"secret|passw(or)?d|token|credential|private|jaas"
    r"|(access|account|api|encryption)[._-]?key",
    re.IGNORECASE)
#: A value with credentials in it whatever its key: a URL's user:password@ (MongoDB, Redis,
#: JDBC URLs) or a password parameter (JDBC's ?user=...&password=...).
SECRET_CONF_VALUE = re.compile(r"://[^/@\s]*:[^/@\s]*@|passw(or)?d=", re.IGNORECASE)
REDACTED = "*********(redacted)"


@dataclass(frozen=True)
class Redaction:
    """How one caller sees sparkConf: as it is (``reveal``: admins), or with the settings that
    look secret redacted; ``extra_keys`` is the ``secret_spark_conf_keys`` setting."""

    reveal: bool
    extra_keys: str = ""

    def shown(self, conf: Mapping[str, str]) -> dict[str, str]:
        if self.reveal:
            return dict(conf)
        return {key: REDACTED if self._secret(key, value) else value
                for key, value in conf.items()}

    def _secret(self, key: str, value: str) -> bool:
        return bool(SECRET_CONF_KEY.search(key) or SECRET_CONF_VALUE.search(value)
                    or (self.extra_keys and re.search(self.extra_keys, key, re.IGNORECASE)))
