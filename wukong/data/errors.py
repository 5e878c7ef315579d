"""Errors users can act on: each message is one line saying what, where and what to do."""


class DataError(ValueError):
    """Bad input or an unusable dataset (the CLI prints the message and exits with status 2)."""
