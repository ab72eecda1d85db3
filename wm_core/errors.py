"""The library's error types, in one light module: the CLI and the app catch them without importing torch.

Each is a ValueError whose message is one line saying what is wrong and what to do."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not match its model; the message says which."""


class DataError(ValueError):
    """A missing, corrupt or mismatched episode store, or data too small for a request."""


class EnvError(ValueError):
    """An environment cannot be used: unknown id, missing extra, or unsupported spaces."""
