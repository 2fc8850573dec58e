"""Clouds and resources: which login host, API host and token scope each combination uses.

A tenant's client reaches three resources, each with its own host per cloud, token scope and
rate limiter: ``graph`` (Microsoft Graph security: alerts_v2, incidents, runHuntingQuery), ``mde``
(the Defender for Endpoint API: machines, files, IPs, users, machine actions, indicators, legacy
hunting) and ``m365d`` (the legacy Microsoft 365 Defender hunting API).

Sources: Microsoft's Defender government-cloud pages (defender-endpoint/gov.md, defender-xdr/usgov.md)
and Graph national-cloud deployments; see ``reference/defender-api.md`` §1.5. China (21Vianet) is
not offered: Defender hunting and the security APIs are not available there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigurationError

GRAPH, MDE, M365D = "graph", "mde", "m365d"
#: Every resource a client may call; also the hunting APIs (each resource has one hunting endpoint).
RESOURCES = (GRAPH, MDE, M365D)
#: The hunting APIs (``hunting_api``): the same names as the resources that serve them.
APIS = RESOURCES
CLOUDS = ("global", "gcc", "gcc-high", "dod")

_API_ALIASES = {
    "graph": GRAPH, "m365dgraph": GRAPH, "graphhunting": GRAPH, "msgraph": GRAPH,
    "mde": MDE, "mdatp": MDE, "defenderforendpoint": MDE,
    "m365d": M365D, "xdr": M365D, "defenderxdr": M365D, "m365defender": M365D,
}
_CLOUD_ALIASES = {
    "global": "global", "public": "global", "commercial": "global", "azurecloud": "global",
    "gcc": "gcc", "usgovgcc": "gcc",
    "gcc-high": "gcc-high", "gcchigh": "gcc-high", "gcc_high": "gcc-high", "usgov": "gcc-high",
    "dod": "dod", "usdod": "dod",
}

_LOGIN_COM = "https://login.microsoftonline.com"
_LOGIN_US = "https://login.microsoftonline.us"

# cloud -> (login host, {resource: host})
_ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "global": (_LOGIN_COM, {
        GRAPH: "https://graph.microsoft.com",
        MDE: "https://api.securitycenter.microsoft.com",
        M365D: "https://api.security.microsoft.com",
    }),
    "gcc": (_LOGIN_COM, {
        GRAPH: "https://graph.microsoft.com",  # GCC stays on worldwide Graph
        MDE: "https://api-gcc.securitycenter.microsoft.us",
        M365D: "https://api-gcc.security.microsoft.us",
    }),
    "gcc-high": (_LOGIN_US, {
        GRAPH: "https://graph.microsoft.us",
        MDE: "https://api-gov.securitycenter.microsoft.us",
        M365D: "https://api-gov.security.microsoft.us",
    }),
    "dod": (_LOGIN_US, {
        GRAPH: "https://dod-graph.microsoft.us",
        MDE: "https://api-gov.securitycenter.microsoft.us",
        M365D: "https://api-gov.security.microsoft.us",
    }),
}

#: Hunting endpoint path and the application permission it needs, per API.
HUNTING = {
    GRAPH: ("/v1.0/security/runHuntingQuery", "ThreatHunting.Read.All (Microsoft Graph)"),
    MDE: ("/api/advancedqueries/run", "AdvancedQuery.Read.All (WindowsDefenderATP)"),
    M365D: ("/api/advancedhunting/run", "AdvancedHunting.Read.All (Microsoft Threat Protection)"),
}


def _key(value: str) -> str:
    return value.strip().lower().replace(" ", "")


def normalize_api(value: str | None) -> str:
    """Map an API name or alias (Graph, MDE, MDATP, M365D, XDR; any case) to graph, mde or m365d.

    The message of an unknown name does not quote it: a mis-split connection string can put a
    secret into any value.
    """
    if value is None or not str(value).strip():
        return GRAPH
    api = _API_ALIASES.get(_key(str(value))) if isinstance(value, str) else None
    if api is None:
        raise ConfigurationError(
            "Unknown API (hunting_api). Use one of: graph (default, Microsoft Graph runHuntingQuery), "
            "mde (alias MDATP, legacy advancedqueries/run), m365d (alias XDR, legacy advancedhunting/run)."
        )
    return api


def normalize_cloud(value: str | None) -> str:
    """Map a cloud name or alias (global, gcc, gcc-high, dod; any case) to its canonical name."""
    if value is None or not str(value).strip():
        return "global"
    key = _key(value) if isinstance(value, str) else ""
    if key in ("cn", "china", "azurechinacloud"):
        raise ConfigurationError(
            "Cloud 'china' is not supported: Microsoft Defender hunting and the Graph security APIs are "
            "not available in Azure China (21Vianet). Use one of: " + ", ".join(CLOUDS) + "."
        )
    cloud = _CLOUD_ALIASES.get(key)
    if cloud is None:
        raise ConfigurationError(f"Unknown cloud. Use one of: {', '.join(CLOUDS)}.")
    return cloud


def resource_host(resource: str, cloud: str) -> str:
    """The Microsoft host (``https://...``) of a resource in a cloud; also the token's resource."""
    if resource not in RESOURCES:
        raise ConfigurationError(f"Unknown resource; the resources are: {', '.join(RESOURCES)}.")
    return _ENDPOINTS[cloud][1][resource]


def login_host(cloud: str) -> str:
    """The Entra ID sign-in host of a cloud."""
    return _ENDPOINTS[cloud][0]


@dataclass(frozen=True)
class Endpoints:
    """Where to sign in, which resource to ask a token for, and where to send API calls."""

    authority_host: str
    resource: str
    api_root: str

    @property
    def scope(self) -> str:
        """The client-credentials scope for the resource: ``<resource>/.default``."""
        return f"{self.resource}/.default"


def endpoints(api: str, cloud: str, *, authority_host: str | None = None, api_root: str | None = None) -> Endpoints:
    """Endpoints for a resource (``api``) in a cloud. Overrides change where requests go, never the token's resource."""
    resource = resource_host(api, cloud)
    return Endpoints(
        authority_host=(authority_host or login_host(cloud)).rstrip("/"),
        resource=resource,
        api_root=(api_root or resource).rstrip("/"),
    )
