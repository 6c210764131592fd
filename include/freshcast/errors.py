"""The errors that a retry cannot change: bad input (spec, data, conf), a damaged file, a
refused check.

A task that raises one fails at once instead of retrying (the DAGs turn it into Airflow's
AirflowFailException); every other error is retried, since it may pass the next time.
"""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that retrying the same task cannot change; the message says what to do."""


class BadInputError(PermanentError):
    """The spec or the data cannot be used; the message names where and how to fix it."""
