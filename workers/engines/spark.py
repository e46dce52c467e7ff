"""The spark engine: one warm SparkSession a worker's jobs share, each job in its own Spark job
group (how it is cancelled and its progress followed) and its slot's FAIR pool. A job whose
function leaves a stream running follows it (workers/streaming.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkgate.jobs.contexts import Context
from sparkgate.jobs.errors import ConfigError
from sparkgate.jobs.settings import Settings
from sparkgate.workers import class_archive
from sparkgate.workers.class_archive import Java
from sparkgate.workers.progress import ProgressCallback, ProgressTracker
from sparkgate.workers.streaming import Following, Streams, Unfollowed

if TYPE_CHECKING:  # pyspark is imported only where a session is built
    from pyspark import SparkContext

log = logging.getLogger("sparkgate.worker")

# A worker's defaults; a context's sparkConf overrides any of them (e.g. to turn the UI on).
SESSION_DEFAULTS = {
    "spark.master": "local[*]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Jobs share the session; FAIR pools keep a long job from starving short ones.
    "spark.scheduler.mode": "FAIR",
}


def start(context: Context, scratch: Path, settings: Settings | None = None) -> SparkEngine:
    """``settings``: where the Spark class archive is (workers/class_archive.py); None:
    start without one."""
    java = check_java()
    archive = class_archive.ready(settings.spark_class_archive_dir if settings else None, java)
    log.info("starting Spark for context %s%s", context.name,
             f", its classes mapped from {archive}" if archive else "")
    pools = write_pools_file(scratch / "pools.xml", context.max_jobs)
    return SparkEngine(build_session(context, pools, scratch, archive), spark_conf_for(context),
                       streaming_duration_s=context.streaming_duration_s)


class SparkEngine:
    def __init__(self, spark: Any, conf: dict[str, str] | None = None, *,
                 streaming_duration_s: int = 1) -> None:
        self.spark = spark
        self.conf = conf if conf is not None else {}
        self._cancel_group = job_group_canceller(spark.sparkContext)
        # The FAIR pool each thread's jobs run in (see ``running``), and the job it runs.
        self._fair_pool_of_thread = threading.local()
        self._job_of_thread = threading.local()
        self._streams = Streams(spark)
        # The batch interval of the StreamingContext an @on_streaming_context function gets.
        self.streaming_duration_s = streaming_duration_s

    def handle(self, kind: str) -> Any:
        if kind == "context":
            return self.spark.sparkContext
        if kind == "sql_context":
            from pyspark.sql import SQLContext

            return SQLContext(self.spark.sparkContext, self.spark)
        if kind == "streaming_context":
            return self._streams.streaming_context(getattr(self._job_of_thread, "id", None),
                                                   self.streaming_duration_s)
        return self.spark

    @contextlib.contextmanager
    def running(self, job_id: str, title: str, slot: int,
                following: Following | None = None) -> Iterator[None]:
        sc = self.spark.sparkContext
        # Each call is a round trip to the JVM, so the thread's properties are not cleared
        # after a job: the next job on this thread sets its own first thing.
        sc.setJobGroup(job_id, title, interruptOnCancel=True)
        # One FAIR pool per slot, not per job: Spark never forgets a pool it has seen. It is a
        # property of the JVM thread that pyspark pins to this Python thread, so it is set only
        # when this thread runs a job for another slot than its last.
        pool = f"slot-{slot}"
        if getattr(self._fair_pool_of_thread, "name", None) != pool:
            sc.setLocalProperty("spark.scheduler.pool", pool)
            self._fair_pool_of_thread.name = pool
        self._job_of_thread.id = job_id
        self._streams.begin(job_id, following or Unfollowed())
        try:
            yield
        finally:
            self._job_of_thread.id = None
            self._streams.end(job_id)

    def follow(self, job_id: str, value: Any) -> Any:
        return self._streams.follow(job_id, value)

    def cancel(self, job_id: str) -> None:
        self._cancel_group(job_id)
        self._streams.stop(job_id)

    def progress(self, on_progress: ProgressCallback) -> ProgressTracker:
        tracker = ProgressTracker(self.spark.sparkContext, on_progress)
        self._streams.report = tracker.streaming
        return tracker

    def stop(self) -> None:
        self.spark.stop()


def spark_conf_for(context: Context) -> dict[str, str]:
    conf = dict(SESSION_DEFAULTS)
    conf.setdefault("spark.app.name", f"sparkgate-{context.name}")
    conf.update({str(k): str(v) for k, v in context.spark_conf.items()})
    return conf


def check_java() -> Java:
    """The java that Spark will use; a clear error if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no java on PATH"
        raise ConfigError(
            f"Spark needs Java 17 or newer, and {where}. Install a JDK (Debian: "
            "apt-get install openjdk-17-jre-headless) or set JAVA_HOME to one."
        )
    try:
        ran = subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"{java} does not run ({exc}); Spark needs a working Java 17+") from None
    return Java(java, (ran.stderr + ran.stdout).decode(errors="replace"))


def write_pools_file(path: Path, slots: int) -> Path:
    """A FAIR scheduler allocation file with one pool per job slot.

    Jobs run in pool ``slot-N`` (not one pool per job: Spark keeps every pool it has seen),
    each pool FAIR inside, equal weight, so concurrent jobs share the executors evenly.
    """
    pools = "".join(
        f'  <pool name="slot-{n}"><schedulingMode>FAIR</schedulingMode>'
        f"<weight>1</weight><minShare>0</minShare></pool>\n"
        for n in range(slots)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0"?>\n<allocations>\n{pools}</allocations>\n')
    return path


def build_session(context: Context, pools_file: Path, scratch: Path,
                  archive: Path | None = None):
    """The session, the JVM's temp files in ``scratch``: Spark's too, as ``spark.local.dir``
    defaults to the JVM's temp folder (a context's sparkConf may still set it); its classes
    mapped from ``archive`` if there is one."""
    from pyspark.sql import SparkSession

    options = [f"-Djava.io.tmpdir={scratch}"]
    if archive is not None:
        options.append(f"-XX:SharedArchiveFile={archive}")
    builder = (SparkSession.builder
               .config("spark.scheduler.allocation.file", str(pools_file))
               .config("spark.driver.defaultJavaOptions",
                       " ".join(f'"{option}"' for option in options)))
    for key, value in spark_conf_for(context).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def job_group_canceller(sc: SparkContext) -> Callable[[str], None]:
    """Cancels a job group's unfinished Spark jobs, and does nothing when it has none (where
    Spark's own cancelJobGroup logs a warning), so the watchdog may call it at every tick."""
    tracker = sc.statusTracker()

    def cancel(group: str) -> None:
        for spark_job in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(spark_job)
            if info is not None and info.status not in ("SUCCEEDED", "FAILED"):
                sc.cancelJobGroup(group)
                return

    return cancel
