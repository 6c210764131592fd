"""The one base class of errors caused by the user's input (spec or data), not by the system.

A task that raises one fails at once instead of retrying: retries cannot fix bad input.
"""

from __future__ import annotations


class BadInputError(Exception):
    """The spec or the data cannot be used; the message names where and how to fix it."""
