"""Every error ocrobin raises on purpose, in one place.

Callers catch :class:`OcrobinError` to tell a bad input or model apart from a bug.
"""

from __future__ import annotations


class OcrobinError(Exception):
    """Base class of all deliberate ocrobin errors."""


class InputError(OcrobinError):
    """An input image or file cannot be read or is not a usable page."""


class PageTooLargeError(InputError):
    """A page has more pixels than a limit allows (a decompression bomb among them); nothing was decoded."""


class ModelError(OcrobinError):
    """A model file or name cannot be loaded, or its contents are inconsistent."""


class UnsafeModelError(ModelError):
    """A legacy pickle asks for something outside the allow-list; nothing was executed."""


class ShardError(OcrobinError):
    """A tar shard or one of its samples is missing, malformed or lacks the expected key."""


class DataError(OcrobinError):
    """Training or evaluation data are missing or inconsistent."""


class ClusterError(OcrobinError):
    """A Ray cluster cannot be reached, refuses our credentials, lacks the resources, or stops making progress."""


class UsageError(OcrobinError):
    """Arguments that do not make sense together (reported as a one-line CLI error)."""
