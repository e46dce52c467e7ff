"""Where a job's Spark work runs: the session's master, and the process a task ran in."""

import os
import socket

from pyspark.sql import SparkSession


def cluster_info(spark: SparkSession, n: int = 1000) -> dict:
    """The master, a sum computed by Spark, and where a task ran.

    A task's Python worker walks up its process ancestry: under a standalone (or any cluster)
    master one ancestor is an executor JVM (``CoarseGrainedExecutorBackend``, whose command line
    names the application); in ``local`` mode the tasks run under the driver's own JVM, whose
    ancestor is the driver's Python process.
    """
    sc = spark.sparkContext
    driver_pid = os.getpid()

    def where(_: int) -> dict:
        ancestors = []
        executor_command: list[str] = []
        pid = os.getppid()
        while pid > 1 and len(ancestors) < 50:
            ancestors.append(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
                with open(f"/proc/{pid}/stat") as fh:
                    stat = fh.read()
            except OSError:
                break
            if not executor_command and any("CoarseGrainedExecutorBackend" in a for a in args):
                executor_command = args
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        return {"hostname": socket.gethostname(), "pid": os.getpid(), "ancestors": ancestors,
                "executorCommand": executor_command}

    task = sc.parallelize([0], 1).map(where).collect()[0]
    return {
        "master": sc.master,
        "applicationId": sc.applicationId,
        "appName": sc.appName,
        "sum": spark.range(n).selectExpr("sum(id) AS s").first()["s"],
        "driver": {"hostname": socket.gethostname(), "pid": driver_pid},
        "task": task,
    }
