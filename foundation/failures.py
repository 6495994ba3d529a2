"""The two kinds of failure every outside system raises: transient (retry later) or permanent.

A transient one is worth retrying: the asset's RetryPolicy backs off and tries again. A permanent
one fails the same way on every retry, so assets turn it into `dg.Failure(allow_retries=False)`
naming the system and the fix.
"""


class SystemUnavailable(Exception):
    """An outside system could not be reached or answered with a transient error: retry later."""


class SystemRefused(Exception):
    """An outside system refused a request permanently: retrying cannot help."""
