"""Every route the emulator serves. Add new API operations here (see :meth:`Router.add`).

Each route names its family (which host serves it and which error envelope it speaks), the application
roles that allow it (any one of them; a 403 names them) and its quota bucket: hunting has its own
quotas, and each family of entity APIs (machines, alerts, files, ...) counts 100 calls/minute on its own.
"""

from __future__ import annotations

import re

from . import admin, alerts, entra, hunting, incidents, indicators, keyvault, machineactions, machines
from .identity import HUNTING_ROLES, KEYVAULT_SECRETS_GET
from .routing import Router

_TENANT = r"/(?P<tenant>[^/]+)"
_GRAPH = r"/(?:v1\.0|beta)/security"
_ID = r"(?P<id>[^/]+)"

MACHINE_READ = ("Machine.Read.All", "Machine.ReadWrite.All")
ALERT_READ = ("Alert.Read.All", "Alert.ReadWrite.All")
ALERT_WRITE = ("Alert.ReadWrite.All",)
GRAPH_ALERT_READ = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
GRAPH_ALERT_WRITE = ("SecurityAlert.ReadWrite.All",)
GRAPH_INCIDENT_READ = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
GRAPH_INCIDENT_WRITE = ("SecurityIncident.ReadWrite.All",)
INCIDENT_READ = ("Incident.Read.All", "Incident.ReadWrite.All")
INCIDENT_WRITE = ("Incident.ReadWrite.All",)
#: Machine action URL suffix -> the permission it needs (§3.3); cancelling takes any of them.
ACTION_ROLES = {"isolate": "Machine.Isolate", "unisolate": "Machine.Isolate", "runAntiVirusScan": "Machine.Scan",
                "collectInvestigationPackage": "Machine.CollectForensics",
                "restrictCodeExecution": "Machine.RestrictExecution",
                "unrestrictCodeExecution": "Machine.RestrictExecution",
                "StopAndQuarantineFile": "Machine.StopAndQuarantine"}
TI_WRITE = ("Ti.ReadWrite", "Ti.ReadWrite.All")


def build_router() -> Router:
    """The default route table."""
    r = Router()
    # Entra ID: no bearer token, Entra error bodies.
    r.add("GET", _TENANT + r"/v2\.0/\.well-known/openid-configuration", "entra", entra.openid_configuration,
          authenticated=False)
    for method in ("POST", "GET"):  # GET gets Entra's "only accepts POST" error
        r.add(method, _TENANT + r"/oauth2/v2\.0/token", "entra", entra.token, authenticated=False)

    # Advanced hunting, one route per API family.
    r.add("POST", _GRAPH + r"/runHuntingQuery", "graph", hunting.run, roles=(HUNTING_ROLES["graph"],),
          quota="hunting")
    r.add("POST", r"/api/advancedqueries/run", "mde", hunting.run, roles=(HUNTING_ROLES["mde"],), quota="hunting")
    r.add("POST", r"/api/advancedhunting/run", "xdr", hunting.run, roles=(HUNTING_ROLES["xdr"],), quota="hunting")

    # MDE entities (§3.2). findbyip first: it would otherwise match /api/machines/{id}.
    r.add("GET", r"/api/machines", "mde", machines.list_machines, roles=MACHINE_READ, quota="machines")
    r.add("GET", r"/api/machines/findbyip\(ip='(?P<ip>[^']*)',\s*timestamp=(?P<timestamp>[^)]*)\)", "mde",
          machines.find_by_ip, roles=MACHINE_READ, quota="machines")
    r.add("GET", r"/api/machines/" + _ID, "mde", machines.get_machine, roles=MACHINE_READ, quota="machines")
    r.add("GET", r"/api/machines/" + _ID + r"/logonusers", "mde", machines.logon_users, roles=("User.Read.All",),
          quota="machines")
    r.add("GET", r"/api/machines/" + _ID + r"/alerts", "mde", alerts.machine_alerts, roles=ALERT_READ,
          quota="machines")
    r.add("GET", r"/api/files/(?P<hash>[^/]+)", "mde", machines.get_file, roles=("File.Read.All",), quota="files")
    r.add("GET", r"/api/files/(?P<hash>[^/]+)/stats", "mde", machines.file_stats, roles=("File.Read.All",),
          quota="files")
    r.add("GET", r"/api/ips/(?P<ip>[^/]+)/stats", "mde", machines.ip_stats, roles=("Ip.Read.All",), quota="ips")
    r.add("GET", r"/api/users/(?P<name>[^/]+)/machines", "mde", machines.user_machines, roles=MACHINE_READ,
          quota="users")

    # Machine actions (§3.3): each action its own permission; all count against one "machineactions" quota.
    for suffix, role in ACTION_ROLES.items():
        r.add("POST", r"/api/machines/" + _ID + r"/(?P<action>" + suffix + ")", "mde", machineactions.submit_action,
              roles=(role,), quota="machineactions")
    r.add("GET", r"/api/machineactions", "mde", machineactions.list_actions, roles=MACHINE_READ,
          quota="machineactions")
    r.add("GET", r"/api/machineactions/" + _ID, "mde", machineactions.get_action, roles=MACHINE_READ,
          quota="machineactions")
    r.add("POST", r"/api/machineactions/" + _ID + r"/cancel", "mde", machineactions.cancel_action,
          roles=tuple(dict.fromkeys(ACTION_ROLES.values())), quota="machineactions")
    r.add("GET", r"/api/machineactions/" + _ID + r"/GetPackageUri", "mde", machineactions.package_uri,
          roles=("Machine.CollectForensics",), quota="machineactions")
    # The package link carries its own token (like a SAS URL), not a bearer token.
    r.add("GET", re.escape(machineactions.PACKAGE_PATH), "mde", machineactions.download_package,
          authenticated=False)

    # Indicators (§3.4).
    r.add("GET", r"/api/indicators", "mde", indicators.list_indicators, roles=TI_WRITE, quota="indicators")
    r.add("POST", r"/api/indicators", "mde", indicators.post_indicator, roles=TI_WRITE, quota="indicators")
    r.add("POST", r"/api/indicators/import", "mde", indicators.import_indicators, roles=TI_WRITE,
          quota="indicators")
    r.add("DELETE", r"/api/indicators/" + _ID, "mde", indicators.delete_indicator, roles=TI_WRITE,
          quota="indicators")

    # MDE alerts (§3.1).
    r.add("GET", r"/api/alerts", "mde", alerts.list_mde_alerts, roles=ALERT_READ, quota="alerts")
    r.add("GET", r"/api/alerts/" + _ID, "mde", alerts.get_mde_alert, roles=ALERT_READ, quota="alerts")
    r.add("PATCH", r"/api/alerts/" + _ID, "mde", alerts.patch_mde_alert, roles=ALERT_WRITE, quota="alerts")

    # Legacy M365D incidents (§4.1): their own token audience and a 50/minute quota.
    r.add("GET", r"/api/incidents", "xdr", incidents.list_m365d_incidents, roles=INCIDENT_READ,
          quota="m365d-incidents")
    r.add("GET", r"/api/incidents/" + _ID, "xdr", incidents.get_m365d_incident, roles=INCIDENT_READ,
          quota="m365d-incidents")
    r.add("PATCH", r"/api/incidents/" + _ID, "xdr", incidents.patch_m365d_incident, roles=INCIDENT_WRITE,
          quota="m365d-incidents")

    # Graph security alerts_v2 and incidents (§4.2, §4.3).
    r.add("GET", _GRAPH + r"/alerts_v2", "graph", alerts.list_graph_alerts, roles=GRAPH_ALERT_READ, quota="alerts")
    r.add("GET", _GRAPH + r"/alerts_v2/" + _ID, "graph", alerts.get_graph_alert, roles=GRAPH_ALERT_READ,
          quota="alerts")
    r.add("PATCH", _GRAPH + r"/alerts_v2/" + _ID, "graph", alerts.patch_graph_alert, roles=GRAPH_ALERT_WRITE,
          quota="alerts")
    r.add("POST", _GRAPH + r"/alerts_v2/" + _ID + r"/comments", "graph", alerts.post_graph_alert_comment,
          roles=GRAPH_ALERT_WRITE, quota="alerts")
    r.add("GET", _GRAPH + r"/incidents", "graph", incidents.list_graph_incidents, roles=GRAPH_INCIDENT_READ,
          quota="incidents")
    r.add("GET", _GRAPH + r"/incidents/" + _ID, "graph", incidents.get_graph_incident, roles=GRAPH_INCIDENT_READ,
          quota="incidents")
    r.add("PATCH", _GRAPH + r"/incidents/" + _ID, "graph", incidents.patch_graph_incident,
          roles=GRAPH_INCIDENT_WRITE, quota="incidents")
    r.add("POST", _GRAPH + r"/incidents/" + _ID + r"/comments", "graph", incidents.post_graph_incident_comment,
          roles=GRAPH_INCIDENT_WRITE, quota="incidents")

    # Control endpoints (base URL only, loopback callers only, no token).
    r.add("GET", r"/_emulator/state", "admin", admin.state, authenticated=False)
    r.add("GET", r"/_emulator/faults", "admin", admin.list_faults, authenticated=False)
    r.add("POST", r"/_emulator/faults", "admin", admin.add_fault, authenticated=False)
    r.add("DELETE", r"/_emulator/faults", "admin", admin.clear_faults, authenticated=False)
    r.add("POST", r"/_emulator/reset", "admin", admin.reset, authenticated=False)
    r.add("POST", r"/_emulator/expire-tokens", "admin", admin.expire_tokens, authenticated=False)
    r.add("POST", r"/_emulator/alerts", "admin", admin.seed_alerts, authenticated=False)

    # Key Vault secrets. The SDK asks for "/secrets/{name}/" (empty version) for the current version.
    r.add("GET", r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", "keyvault", keyvault.get_secret,
          roles=(KEYVAULT_SECRETS_GET,))
    return r
