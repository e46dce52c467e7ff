"""Worker processes: each holds one warm SparkSession and runs a context's jobs."""
