"""HTTP transport: one ``requests.Session`` per client, a deadline on every call, tenacity retries.

- **Deadlines.** ``timeout`` bounds a whole call (headers and body), not each read: a body dripped
  slowly is cut off when the call's time is up. Each attempt gets at most what remains of the
  retry budget.
- **Retries** cover 429 (honouring ``Retry-After`` in seconds or as an HTTP date), 5xx, timeouts,
  connection failures and unreadable bodies, within a bounded number of attempts and total time.
  400, 403, 404 and 409 are never retried; a 401 gets exactly one fresh token.
- **Write safety.** Whether a call may be sent again follows from its method: GET, PUT and DELETE
  may; POST and PATCH (response actions, comments) are re-sent only where the service provably
  did not act on them: a 429, or a connection that never opened. Never after a read timeout or a
  connection lost mid-answer. Hunting opts in (``idempotent=True``): it only reads.
- **No redirects, no foreign hosts.** Defender and Entra ID never redirect these calls. A 3xx, or
  an absolute URL (an ``@odata.nextLink``) on another host than the resource's configured root,
  raises :class:`~connector.errors.RedirectRefusedError` before anything is sent there.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3

from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DefenderError,
    NotFoundError,
    PermissionDeniedError,
    RedirectRefusedError,
    ServiceError,
    ThrottledError,
)

log = logging.getLogger(__name__)

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_CONNECT_TIMEOUT = 10.0


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
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, lower-cased, with the scheme's default port filled in."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: float,
    operation: str,
    ca_bundle: str | None = None,
    **kwargs,
) -> requests.Response:
    """Send one request with no redirects, read the whole body by ``deadline`` (monotonic), return it.

    The response's body is read into one buffer (``response.content``) and the connection goes back
    to the pool. Failures become :class:`ServiceError` with ``reached_service`` set honestly.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ServiceError(f"{_cap(operation)} ran out of time before it could be sent.", reached_service=False)
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ServiceError(
            f"{_cap(operation)} cannot verify TLS: the CA bundle {ca_bundle!r} no longer exists or is not a file. "
            "Restore it, or point ca_bundle at the PEM file of CAs to trust.",
            reached_service=False, retryable=False,
        )
    timeout = (min(_CONNECT_TIMEOUT, remaining), remaining)
    try:
        response = session.request(method, url, timeout=timeout, stream=True, allow_redirects=False, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise ServiceError(
            f"{_cap(operation)}: the TLS connection to {_host(url)} failed ({_short(str(exc), 160)}). If a proxy or "
            "private endpoint presents its own certificate, set ca_bundle to a PEM file of the CAs to trust.",
            reached_service=False, retryable=False,
        ) from None
    except requests.ConnectTimeout:
        raise ServiceError(f"{_cap(operation)}: connecting to {_host(url)} timed out.", reached_service=False) from None
    except requests.Timeout:
        raise ServiceError(f"{_cap(operation)} timed out waiting for {_redact(url)} to answer.") from None
    except requests.ConnectionError as exc:
        never_opened = _never_opened(exc)
        raise ServiceError(
            f"{_cap(operation)} failed: could not {'reach' if never_opened else 'finish talking to'} {_redact(url)} "
            f"({_short(str(exc), 160)}).",
            reached_service=not never_opened,
        ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
            ValueError) as exc:
        from .errors import ConfigurationError

        raise ConfigurationError(f"{_cap(operation)}: the URL {_redact(url)!r} is not usable ({exc}).") from None
    except OSError as exc:  # e.g. the CA bundle vanished between the check and the send
        raise ServiceError(f"{_cap(operation)} could not be sent: {type(exc).__name__}: {_short(str(exc), 160)}",
                           reached_service=False, retryable=False) from None
    read_body(response, deadline, operation)
    log.debug("%s %s -> %s in %.3fs", method, _redact(url), response.status_code, response.elapsed.total_seconds())
    return response


def read_body(response: requests.Response, deadline: float, operation: str) -> bytes:
    """Read the whole body of a ``stream=True`` response into ``response.content`` by ``deadline``.

    urllib3 reads a Content-Length body straight into one buffer (``response.content`` would join
    10 kB chunks and hold the body twice). A watchdog shuts the socket down when the deadline
    passes, so a body dripped byte by byte cannot hold the call past it.
    """
    try:
        with _watchdog(response, deadline) as fired:
            try:
                body = response.raw.read(decode_content=True)
            except (OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
                if fired.is_set():
                    raise ServiceError(f"{_cap(operation)} timed out: the answer did not arrive in time.") from None
                raise ServiceError(f"{_cap(operation)}: the response was cut off ({type(exc).__name__}).") from None
        if fired.is_set():
            raise ServiceError(f"{_cap(operation)} timed out: the answer did not arrive in time.")
    finally:
        response.raw.release_conn()
    response._content = body
    response._content_consumed = True
    return body


@contextlib.contextmanager
def _watchdog(response: requests.Response, deadline: float) -> Iterator[threading.Event]:
    fired = threading.Event()
    remaining = deadline - time.monotonic()
    sock = _socket_of(response)
    if sock is None:
        yield fired
        return

    def cut() -> None:
        fired.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the base method: leaves the TLS object alone

    timer = threading.Timer(max(0.0, remaining), cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def _socket_of(response: requests.Response):
    connection = getattr(response.raw, "_connection", None) or getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _never_opened(exc: requests.ConnectionError) -> bool:
    """True when the connection was refused or the name did not resolve: nothing was sent."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError))


class Transport:
    """Sends authenticated JSON requests to one resource root with retries and error mapping."""

    def __init__(
        self,
        session: requests.Session,
        api_root: str,
        get_token: Callable[..., str],
        *,
        timeout: float,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ca_bundle: str | None = None,
    ) -> None:
        self.session = session
        self.api_root = api_root.rstrip("/")
        self._origin = origin(self.api_root)
        self._get_token = get_token
        self._timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._ca_bundle = ca_bundle

    def url_for(self, path_or_url: str) -> str:
        """The absolute URL for a path, or the URL itself if it is on this resource's host.

        Raises :class:`RedirectRefusedError` for a URL on any other host (scheme and port included).
        """
        if "://" not in path_or_url:
            return f"{self.api_root}{path_or_url}"
        if origin(path_or_url) != self._origin:
            raise RedirectRefusedError(
                f"Refused to follow a link to {_host(path_or_url)}: this client sends its token only to "
                f"{_host(self.api_root)}. Nothing was sent there."
            )
        return path_or_url

    def request(
        self,
        method: str,
        path: str,
        *,
        json=None,
        params=None,
        operation: str,
        permission: str | None = None,
        idempotent: bool | None = None,
        limiter=None,
        parse: Callable[[requests.Response], object] | None = None,
        bad_request: type[BadRequestError] = BadRequestError,
        timeout: float | None = None,
        headers: dict | None = None,
    ):
        """Send ``method path`` and return the 2xx response (or ``parse(response)``), else raise.

        ``operation`` names the call in messages ("run hunting query"); ``permission`` is the
        application permission named on 403; ``idempotent`` defaults from the method; ``limiter``
        (a :class:`~connector.ratelimit.Limiter`) holds a slot around each attempt; ``parse`` runs
        inside the attempt, so a body it cannot read (``ServiceError``) is retried like a server
        fault; ``bad_request`` is the class raised on 400 (``QueryError`` for hunting).
        """
        method = method.upper()
        url = self.url_for(path)
        may_repeat = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent
        policy = self.retry
        started = time.monotonic()
        budget = _Budget(started + policy.max_total_seconds)
        call_timeout = self._timeout if timeout is None else timeout
        context = (operation, permission, bad_request)

        def attempt():
            response = self._send_with_token(method, url, json, params, headers, call_timeout, budget, limiter,
                                              context)
            if 300 <= response.status_code < 400:
                raise RedirectRefusedError(
                    f"{_cap(operation)}: {_host(url)} answered HTTP {response.status_code} with a redirect to "
                    f"{_host(response.headers.get('Location') or '(no location)')}; Defender never redirects API calls, "
                    "so it was not followed (the token and the request stay here). Check api_root / proxies.",
                    status=response.status_code,
                )
            if response.status_code >= 400:
                raise _error_for(response, *context)
            return parse(response) if parse is not None else response

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: _retryable(e, may_repeat)),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _stop_when_budget_spent(policy, budget),
            wait=_wait(policy),
            sleep=self._sleep,
            before_sleep=_log_retry(operation),
            reraise=True,
        )
        return retrying(attempt)

    def _send_with_token(self, method, url, json, params, headers, call_timeout, budget, limiter,
                         context) -> requests.Response:
        operation = context[0]
        token = None
        for fresh in (False, True):
            try:
                token = self._get_token(force_refresh=fresh, rejected=token)
            except ServiceError as exc:
                exc.reached_service = False  # the API call itself was never sent
                raise
            all_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
            with limiter.slot() if limiter is not None else contextlib.nullcontext(0.0) as waited:
                budget.end += waited or 0.0  # queueing for the quota is not the call taking long
                deadline = min(time.monotonic() + call_timeout, budget.end)
                response = send(self.session, method, url, json=json, params=params, headers=all_headers,
                                deadline=deadline, operation=operation, ca_bundle=self._ca_bundle)
            if response.status_code != 401 or fresh:
                return response
            log.info("%s got HTTP 401; retrying once with a fresh token", operation)
        return response


def _retryable(exc: BaseException, may_repeat: bool) -> bool:
    if isinstance(exc, ThrottledError):
        return True  # 429: the service did not act on it
    if isinstance(exc, ServiceError) and exc.retryable:
        return may_repeat or not exc.reached_service
    return False


class _Budget:
    """When a call's retries must end (monotonic); moved on by the time spent queueing for the quota."""

    def __init__(self, end: float) -> None:
        self.end = end


def _stop_when_budget_spent(policy: RetryPolicy, budget: _Budget):
    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        if hint > policy.max_retry_after:
            return True  # the service asked for a longer pause than we will sit through
        return time.monotonic() + hint >= budget.end
    return stop


def _wait(policy: RetryPolicy):
    backoff = tenacity.wait_exponential_jitter(
        multiplier=policy.backoff_initial, max=policy.backoff_max, jitter=policy.backoff_initial
    )

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


def _error_for(response: requests.Response, operation: str, permission: str | None,
               bad_request: type[BadRequestError] = BadRequestError) -> DefenderError:
    status = response.status_code
    code, message, request_id = error_details(response)
    kwargs = {"status": status, "code": code, "request_id": request_id}
    said = f" The service said: {message}" if message else ""
    if status == 400:
        return bad_request(f"{_cap(operation)} was rejected: {message or 'bad request'}", **kwargs)
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
    if status == 409:
        return ConflictError(f"{_cap(operation)}: conflict (HTTP 409).{said}", **kwargs)
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
    return BadRequestError(f"{_cap(operation)} failed with HTTP {status}.{said}", **kwargs)


def error_details(response: requests.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, request id) from a Graph, MDE/XDR, Entra or unknown error body; never raises."""
    request_id = response.headers.get("request-id") or response.headers.get("x-ms-request-id")
    content_type = response.headers.get("Content-Type", "")
    try:
        body = response.json()
    except (ValueError, RecursionError):
        text = response.text if response.content is not None else ""
        if "html" in content_type.lower() or text.lstrip().lower().startswith(("<!doctype", "<html")):
            return None, "an HTML page instead of JSON (a gateway or proxy error)", request_id
        text = _short(text)
        return None, (f"a non-JSON body: {text!r}" if text else None), request_id
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        inner = error.get("innerError") or error.get("innererror") or {}
        inner_id = inner.get("request-id") if isinstance(inner, dict) else None
        request_id = inner_id or error.get("target") or request_id
        return _plain(error.get("code")), _plain(error.get("message")), _plain(request_id)
    if isinstance(error, str):  # OAuth-style {"error": "...", "error_description": "..."}
        return error, _short(str(body.get("error_description", ""))), request_id
    return None, _short(str(body)), request_id


def _plain(value) -> str | None:
    if value is None:
        return None
    return _short(value if isinstance(value, str) else str(value))


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _redact(url: str) -> str:
    return url.split("?", 1)[0]


def _host(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}" if scheme else url[:80]
