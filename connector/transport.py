"""HTTP transport: one ``requests.Session``, a timeout on every call, tenacity retries, error mapping.

Retries cover 429 (honouring ``Retry-After`` in seconds or as an HTTP date), 5xx, timeouts,
connection failures and unreadable bodies, within a bounded number of attempts and total time.
400, 403 and 404 are never retried. A 401 gets exactly one fresh token. Calls that must not run
twice (``idempotent=False``: response actions) are retried only when the service said it did not
run them (429).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
import tenacity
import urllib3

from .errors import (
    AuthenticationError,
    DefenderError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    ServiceError,
    ThrottledError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, total seconds, back-off bounds and the longest Retry-After honoured."""

    max_attempts: int = 5
    max_total_seconds: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 120.0


class _PinnedSession(requests.Session):
    """A Session whose CA bundle wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

    requests lets those variables replace a Session's ``verify`` for every call that does not pass
    ``verify=`` itself, and MSAL never passes it. Proxy variables are still honoured.
    """

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.verify = ca_bundle

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


def make_session(ca_bundle: str | None, user_agent: str) -> requests.Session:
    """A Session for one client: CA pinned when given, connection pooling, our User-Agent."""
    session = _PinnedSession(ca_bundle) if ca_bundle else requests.Session()
    session.headers["User-Agent"] = user_agent
    return session


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date. None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Transport:
    """Sends authenticated JSON requests to one API root with retries and error mapping."""

    def __init__(
        self,
        session: requests.Session,
        api_root: str,
        get_token: Callable[..., str],
        *,
        timeout: float,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.api_root = api_root.rstrip("/")
        self._get_token = get_token
        self._timeout = (min(10.0, timeout), timeout)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def request(
        self,
        method: str,
        path: str,
        *,
        json=None,
        params=None,
        operation: str,
        permission: str | None = None,
        idempotent: bool = True,
        before_attempt: Callable[[], object] | None = None,
        parse: Callable[[requests.Response], object] | None = None,
        stream: bool = False,
        timeout: float | None = None,
    ):
        """Send ``method path`` and return the 2xx response (or ``parse(response)``), else raise.

        ``operation`` names the call in messages ("run hunting query"); ``permission`` is the
        application permission named when the service answers 403; ``before_attempt`` runs before
        every attempt (the rate limiter); ``parse`` runs inside the attempt, so a body it cannot
        read (``ServiceError``) is retried like a server fault. With ``stream`` the body is left
        unread for ``parse`` to take with :func:`read_body` (one buffer instead of requests' two).
        """
        url = path if path.startswith("https://") else f"{self.api_root}{path}"
        policy = self.retry
        started = time.monotonic()
        call_timeout = self._timeout if timeout is None else (min(10.0, timeout), timeout)

        def attempt():
            if before_attempt is not None:
                before_attempt()
            response = self._send_with_token(method, url, json, params, call_timeout, operation, stream)
            if response.status_code >= 400:
                raise _error_for(response, operation, permission)
            return parse(response) if parse is not None else response

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: _retryable(e, idempotent)),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _stop_when_budget_spent(policy, started),
            wait=_wait(policy),
            sleep=self._sleep,
            before_sleep=_log_retry(operation),
            reraise=True,
        )
        return retrying(attempt)

    def _send_with_token(self, method, url, json, params, timeout, operation, stream) -> requests.Response:
        for fresh in (False, True):
            token = self._get_token(force_refresh=fresh)
            try:
                response = self.session.request(
                    method, url, json=json, params=params, timeout=timeout, stream=stream,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
            except requests.Timeout as exc:
                raise ServiceError(f"{_cap(operation)} timed out ({type(exc).__name__}) calling {_redact(url)}.") from None
            except requests.ConnectionError as exc:
                raise ServiceError(
                    f"{_cap(operation)} failed: could not reach {_redact(url)} ({type(exc).__name__}: "
                    f"{_short(str(exc))})."
                ) from None
            log.debug("%s %s -> %s in %.3fs", method, _redact(url), response.status_code, response.elapsed.total_seconds())
            if response.status_code != 401 or fresh:
                return response
            log.info("%s got HTTP 401; retrying once with a fresh token", operation)
        return response


def read_body(response: requests.Response, operation: str) -> bytes:
    """The whole body of a ``stream=True`` response as one bytes object; ServiceError if it is cut off.

    ``response.content`` joins 10 kB chunks, holding the body twice at its peak; urllib3 reads a
    Content-Length body straight into one buffer. The connection goes back to the pool after.
    """
    try:
        body = response.raw.read(decode_content=True)
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise ServiceError(f"{_cap(operation)}: the response was cut off ({type(exc).__name__}).") from None
    finally:
        response.raw.release_conn()
    return body


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, ThrottledError):
        return True
    return idempotent and isinstance(exc, ServiceError)


def _stop_when_budget_spent(policy: RetryPolicy, started: float):
    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        if hint > policy.max_retry_after:
            return True  # the service asked for a longer pause than we will sit through
        return time.monotonic() - started + hint > policy.max_total_seconds
    return stop


def _wait(policy: RetryPolicy):
    backoff = tenacity.wait_exponential_jitter(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        return hint if hint is not None else backoff(state)
    return wait


def _log_retry(operation: str):
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.1fs",
            operation, state.attempt_number, exc, state.upcoming_sleep,
        )
    return before_sleep


def _error_for(response: requests.Response, operation: str, permission: str | None) -> DefenderError:
    status = response.status_code
    code, message, request_id = _error_details(response)
    kwargs = {"status": status, "code": code, "request_id": request_id}
    said = f" The service said: {message}" if message else ""
    if status == 400:
        return QueryError(f"{_cap(operation)} was rejected: {message or 'bad request'}", **kwargs)
    if status == 401:
        return AuthenticationError(
            f"{_cap(operation)} was refused with HTTP 401 even with a fresh token: the token is not valid for this "
            f"API (check the api/cloud settings and that the app has admin consent).{said}",
            **kwargs,
        )
    if status == 403:
        needs = f" The app needs the application permission {permission}, with admin consent." if permission else ""
        return PermissionDeniedError(f"{_cap(operation)} was denied (HTTP 403).{needs}{said}", **kwargs)
    if status == 404:
        return NotFoundError(f"{_cap(operation)}: not found (HTTP 404).{said}", **kwargs)
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        when = f" Retry after {retry_after:.0f}s." if retry_after is not None else ""
        return ThrottledError(
            f"{_cap(operation)} was throttled (HTTP 429) and the retry budget is spent.{when}{said}",
            retry_after=retry_after, **kwargs,
        )
    if status >= 500 or status == 408:
        return ServiceError(
            f"{_cap(operation)} failed with HTTP {status} (a service fault).{said}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")), **kwargs,
        )
    return QueryError(f"{_cap(operation)} failed with HTTP {status}.{said}", **kwargs)


def _error_details(response: requests.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, request id) from a Graph, MDE/XDR or unknown error body; never raises."""
    request_id = response.headers.get("request-id") or response.headers.get("x-ms-request-id")
    content_type = response.headers.get("Content-Type", "")
    try:
        body = response.json()
    except ValueError:
        if "html" in content_type.lower() or response.text.lstrip().lower().startswith(("<!doctype", "<html")):
            return None, "an HTML page instead of JSON (a gateway or proxy error)", request_id
        text = _short(response.text)
        return None, (f"a non-JSON body: {text!r}" if text else None), request_id
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        inner = error.get("innerError") or error.get("innererror") or {}
        request_id = (inner.get("request-id") if isinstance(inner, dict) else None) or error.get("target") or request_id
        return error.get("code"), error.get("message"), request_id
    if isinstance(error, str):  # OAuth-style {"error": "...", "error_description": "..."}
        return error, _short(str(body.get("error_description", ""))), request_id
    return None, _short(str(body)), request_id


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _redact(url: str) -> str:
    return url.split("?", 1)[0]
