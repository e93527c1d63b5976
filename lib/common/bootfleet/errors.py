"""Every error bootfleet raises on purpose, each carrying the HTTP status it answers with.

The layers below the HTTP layer (db, boot, provision, dns, providers, cli) raise these
and never import the HTTP layer; `bootfleet.web.api` maps them to answers in one place:
`status` and `public` become the answer, and a 5xx is logged with its full `message`.
"""

from __future__ import annotations


class BootfleetError(Exception):
    """Base of bootfleet's errors: a message for the caller and the status it answers with."""

    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def public(self) -> str:
        """What the HTTP answer says (the whole message, unless a subclass holds details back)."""
        return self.message


# --- the caller's request ------------------------------------------------------------


class BadRequestError(BootfleetError):
    status = 400


class ValidationError(BadRequestError, ValueError):
    """Bad input: the message names the field and says what was wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class UnauthorizedError(BootfleetError):
    status = 401


class ForbiddenError(BootfleetError):
    status = 403


class TokenError(BootfleetError):
    """A token was missing (status 401) or not valid (status 403)."""

    def __init__(self, message: str, status: int):
        super().__init__(message, status)


class NotFoundError(BootfleetError):
    status = 404


class ConflictError(BootfleetError):
    status = 409


class StageError(BootfleetError, ValueError):
    """A stage change that the rules refuse: 400 for a stage that does not exist or a node
    may not report, 409 for a move the node's current stage forbids."""

    def __init__(self, message: str, status: int):
        super().__init__(message, status)


class TooManyRequestsError(BootfleetError):
    """429, with the seconds to wait (the answer's Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class PayloadTooLargeError(BootfleetError):
    status = 413


# --- the server's side -----------------------------------------------------------------


class SettingsError(BootfleetError, ValueError):
    """A setting is missing or malformed."""

    status = 500

    @property
    def public(self) -> str:
        return f"server misconfigured: {self.message}"


class RenderError(BootfleetError):
    """A template could not be rendered for this node (a server-side problem)."""

    status = 500


class BadGatewayError(BootfleetError):
    """An outside service bootfleet depends on (DNS, VPC, object storage) answered with an error."""

    status = 502


class ServiceUnavailableError(BootfleetError):
    status = 503


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database cannot be reached right now."""

    @property
    def public(self) -> str:
        return "the database is unavailable; try again shortly"


class RetryableDatabaseError(DatabaseUnavailableError):
    """The transaction was rolled back and nothing was committed (a deadlock, a serialization
    failure, a connection lost before COMMIT): running the request again is safe."""
