"""Error types every layer shares.

A `UserError` carries a message written for the person using the product: one line, no
traceback, saying what is wrong and, where possible, what to do. The CLI turns it into
exit code 1; the GUI shows it in a dialog.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can act on (bad input, missing model, full disk, ...)."""


class UsageError(UserError):
    """The command line itself is wrong (exit code 2, like argparse's own errors)."""


class ModelFileError(UserError):
    """A model file is missing, damaged, of the wrong kind, or unsafe to load."""


class UnsafePickleError(ModelFileError):
    """A pickle asked for something a model file never needs; nothing was executed."""


class Cancelled(Exception):
    """A long job was cancelled by the user. Not an error: callers keep partial results."""
