"""The two kinds of failure every outside system raises: transient (retry later) or permanent."""


class SystemUnavailable(Exception):
    """An outside system could not be reached or answered with a transient error: retry later."""


class SystemRefused(Exception):
    """An outside system refused a request permanently: retrying cannot help."""
