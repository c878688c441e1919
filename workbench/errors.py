"""Exceptions that carry a message meant for the user.

The command line prints these without a traceback; everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = ["WorkbenchError", "DataError", "ModelFileError"]


class WorkbenchError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class DataError(WorkbenchError, ValueError):
    """A data file or folder is missing, unreadable or not what was expected.

    The message names the file, what was expected and what was found.
    """


class ModelFileError(WorkbenchError, ValueError):
    """A saved detector file is from another detector, another version, or damaged."""
