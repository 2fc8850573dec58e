"""One exception hierarchy for everything the connector raises.

Every message is meant for a person: it says what failed and what to do next, and it never
contains a secret (client secrets, certificates, tokens). ``status`` and ``code`` carry the HTTP
status and the service's error code when there was a response; ``request_id`` the service's
correlation id, which Microsoft support asks for. ``str()`` and ``repr()`` never raise, whatever
the service sent.
"""

from __future__ import annotations


def _text(value) -> str | None:
    """A short, safe string for an error attribute (services sometimes send objects where text belongs)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):  # {"code": ..., "message": ...} where a string was expected
        value = value.get("code") or value.get("message") or "unreadable"
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - an object whose __str__ fails must not break error reporting
        text = f"<{type(value).__name__}>"
    return text[:300]


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
        message = _text(message) if not isinstance(message, str) else message
        super().__init__(message)
        self.message = message or ""
        self.status = status if isinstance(status, int) else None
        self.code = _text(code)
        self.request_id = _text(request_id)

    def __str__(self) -> str:
        try:
            extra = [f"HTTP {self.status}" if self.status else None, self.code,
                     self.request_id and f"request id {self.request_id}"]
            extra = [str(e) for e in extra if e]
            return f"{self.message} ({', '.join(extra)})" if extra else str(self.message)
        except Exception:  # noqa: BLE001 - str() of an error must never raise
            return type(self).__name__

    def __repr__(self) -> str:
        try:
            return f"{type(self).__name__}({str(self)!r})"
        except Exception:  # noqa: BLE001
            return f"{type(self).__name__}()"


class ConfigurationError(DefenderError):
    """Missing or malformed settings, connection string or config file; unknown instance, cloud or API."""


class AuthenticationError(DefenderError):
    """The token request was refused, or a 401 that a fresh token did not cure."""


class PermissionDeniedError(DefenderError):
    """HTTP 403: the app lacks the permission (role) the call needs."""


class BadRequestError(DefenderError):
    """HTTP 400 (or another 4xx without its own class): carries the service's own message."""


class QueryError(BadRequestError):
    """HTTP 400 on a hunting query: carries the KQL error text (or how to narrow a too-large result)."""


class NotFoundError(DefenderError):
    """HTTP 404: the alert, machine, incident... does not exist (or is not visible to this app)."""


class ConflictError(DefenderError):
    """HTTP 409, or an action of the same kind already in progress on the device."""


class ActionFailedError(DefenderError):
    """A machine action ended Failed, TimeOut or Cancelled. ``action`` is the action as sent."""

    def __init__(self, message: str, *, action: dict | None = None, final_status: str | None = None,
                 **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.action = action or {}
        self.final_status = final_status


class RedirectRefusedError(DefenderError):
    """The service answered with a redirect, or a next-page link to another host.

    Defender and Entra ID never redirect these calls; following would send the token (or, on
    sign-in, the client secret) to a host that was not configured. Nothing was sent there.
    """


class ThrottledError(DefenderError):
    """HTTP 429 still after the retry budget. ``retry_after`` is the service's last hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceError(DefenderError):
    """5xx, timeouts, connection failures and unreadable bodies, still after the retry budget.

    ``retry_after`` is the pause the service (or MSAL's sign-in throttle) asked for, if any.
    ``reached_service`` is False only when the request provably never left this machine (the
    connection was never opened): only then may a call that must not run twice be sent again.
    ``retryable`` is False for failures another attempt cannot cure (a vanished CA file, a TLS
    certificate that does not verify).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, reached_service: bool = True,
                 retryable: bool = True, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.reached_service = reached_service
        self.retryable = retryable


__all__ = [
    "DefenderError",
    "ConfigurationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "BadRequestError",
    "QueryError",
    "NotFoundError",
    "ConflictError",
    "ActionFailedError",
    "RedirectRefusedError",
    "ThrottledError",
    "ServiceError",
]
