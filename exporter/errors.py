"""Errors that end a run, each carrying a one-line reason a user can act on.

Row-level problems are never exceptions: they become rejects. These are for conditions
that make the whole run impossible (bad configuration, bad credentials, unreadable source).
"""


class ExportError(Exception):
    """A run cannot go on; ``str(error)`` is the one-line reason shown to the user."""


class ConfigError(ExportError):
    """The export definition or command line is wrong; nothing was sent."""


class SourceError(ExportError):
    """The segment source cannot be read or has the wrong shape; nothing more is read."""


class KlaviyoAuthError(ExportError):
    """Klaviyo refused the API key (401) or its scopes (403); retrying cannot help."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


class KlaviyoRequestError(ExportError):
    """Klaviyo kept failing past the retry budget, or answered in a way we cannot handle."""


class TransientError(Exception):
    """A dependency (Key Vault, storage) did not answer within our retries; later it may.

    Deliberately not an ``ExportError``: a run meeting it is not failed but handed back to
    the queue host, which delivers the message again after its visibility timeout, so a
    blip never loses a dropped file.
    """
