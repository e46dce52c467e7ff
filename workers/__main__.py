"""``python -m workers --context NAME``, as the supervisor starts it: ``sparkgate worker``."""

from gateway.cli import worker

if __name__ == "__main__":
    worker(prog_name="sparkgate worker")
