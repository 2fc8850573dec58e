"""``DefenderClient``: every Defender resource of one tenant behind flat, notebook-friendly verbs.

The verbs live in one module per resource family (:mod:`~connector.hunting`, :mod:`~connector.alerts`,
:mod:`~connector.devices`, :mod:`~connector.entities`), mixed in here: adding an operation touches
one module and its test.
"""

from __future__ import annotations

import threading

from .actions import ActionOperations
from .alerts import AlertOperations, WriteBackOperations
from .auth import Credentials
from .devices import DeviceOperations
from .entities import EntityOperations
from .hunting import HuntingOperations, format_timespan
from .indicators import IndicatorOperations
from .ratelimit import Limiter, limiter_for
from .resources import Resource
from .settings import TenantSettings
from .transport import RetryPolicy, Transport, make_session

USER_AGENT = "defender-soar/0.1"


class DefenderClient(HuntingOperations, AlertOperations, WriteBackOperations, DeviceOperations, EntityOperations,
                     ActionOperations, IndicatorOperations):
    """A client for one Microsoft Defender tenant: Graph security and the Defender for Endpoint API.

    Build it with :func:`connector.connect` (kwargs, connection string or msticpyconfig.yaml) or
    from :class:`TenantSettings`. Building it makes no network call: each resource (``graph``,
    ``mde``, ``m365d``) gets its transport, token scope and rate limiter on first use. It owns one
    HTTP session; tokens are shared with other clients of the same tenant, app and credential, and
    rate limiters with every client of the tenant. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, settings: TenantSettings, *, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self._retry = retry
        self._session = make_session(settings.ca_bundle, USER_AGENT)
        self._credentials = Credentials(settings, self._session)
        self._resources: dict[str, Resource] = {}
        self._lock = threading.Lock()
        self._queries = None

    @property
    def api(self) -> str:
        """The hunting API in use: ``graph``, ``mde`` or ``m365d`` (same as ``settings.hunting_api``)."""
        return self.settings.hunting_api

    def __repr__(self) -> str:
        s = self.settings
        return (f"DefenderClient(tenant_id={s.tenant_id!r}, client_id={s.client_id!r}, "
                f"hunting_api={s.hunting_api!r}, cloud={s.cloud!r})")

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (tokens stay cached for other clients of the tenant)."""
        self._session.close()

    @property
    def queries(self):
        """The query library bound to this client: ``client.queries.list()``,
        ``client.queries.M365D.list_host_processes(host_name="wks-01", start="-3d")`` (see :mod:`connector.library`).
        """
        if self._queries is None:
            from .library import QueryLibrary

            self._queries = QueryLibrary(self)
        return self._queries

    def get_token(self, resource: str | None = None) -> str:
        """An access token for ``resource`` (default: the hunting API's); cached, renewed before expiry."""
        endpoints = self.settings.endpoints_for(resource or self.settings.hunting_api)
        return self._credentials.get_token(endpoints.scope)

    def _resource(self, name: str) -> Resource:
        with self._lock:
            resource = self._resources.get(name)
            if resource is None:
                s = self.settings
                endpoints = s.endpoints_for(name)
                transport = Transport(self._session, endpoints.api_root, self._credentials.provider(endpoints.scope),
                                      timeout=s.timeout, retry=self._retry, ca_bundle=s.ca_bundle)
                limiter = limiter_for((s.cloud, s.tenant_id.lower(), name), [(s.rate_limits.api_per_minute, 60.0)])
                resource = self._resources[name] = Resource(name, transport, limiter)
            return resource

    def _hunting_limiter(self) -> Limiter:
        s = self.settings
        limits = s.rate_limits
        return limiter_for((s.cloud, s.tenant_id.lower(), "hunting"),
                           [(limits.hunting_per_minute, 60.0), (limits.hunting_per_hour, 3600.0)])


__all__ = ["DefenderClient", "format_timespan"]
