"""Worker processes: each holds one context's warm engine (engines/) and runs its jobs."""
