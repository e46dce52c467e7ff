"""``python -m sparkgate``: the command line; the supervisor starts workers this way."""

from sparkgate.cli import main

if __name__ == "__main__":
    main(prog_name="sparkgate")
