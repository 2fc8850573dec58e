"""One exception hierarchy for everything the connector raises.

Every message is meant for a person: it says what failed and what to do next, and it never
contains a secret (client secrets, certificates, tokens). ``status`` and ``code`` carry the HTTP
status and the service's error code when there was a response; ``request_id`` the service's
correlation id, which Microsoft support asks for.
"""

from __future__ import annotations


class DefenderError(Exception):
    """Base class of every error raised by the connector."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        extra = [f"HTTP {self.status}" if self.status else None, self.code, self.request_id and f"request id {self.request_id}"]
        extra = [e for e in extra if e]
        return f"{self.message} ({', '.join(extra)})" if extra else self.message


class ConfigurationError(DefenderError):
    """Missing or malformed settings, connection string or config file; unknown instance, cloud or API."""


class AuthenticationError(DefenderError):
    """The token request was refused, or a 401 that a fresh token did not cure."""


class PermissionDeniedError(DefenderError):
    """HTTP 403: the app lacks the permission (role) the call needs."""


class QueryError(DefenderError):
    """HTTP 400 on a query or request: carries the service's own message (e.g. the KQL error)."""


class NotFoundError(DefenderError):
    """HTTP 404: the alert, machine, incident... does not exist (or is not visible to this app)."""


class ThrottledError(DefenderError):
    """HTTP 429 still after the retry budget. ``retry_after`` is the service's last hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceError(DefenderError):
    """5xx, timeouts, connection failures and unreadable bodies, still after the retry budget.

    ``retry_after`` is the pause the service (or MSAL's sign-in throttle) asked for, if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


__all__ = [
    "DefenderError",
    "ConfigurationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "QueryError",
    "NotFoundError",
    "ThrottledError",
    "ServiceError",
]
