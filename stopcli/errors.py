"""Errors meant for the user: the CLI prints them as one line and exits non-zero, never with a traceback."""


class StopError(Exception):
    """A problem with what the user asked for (bad file, bad argument, unloadable model)."""

    exit_code = 1


class UsageError(StopError):
    """A bad argument or preset: exit code 2, like any command-line usage error."""

    exit_code = 2
