"""MDE entity reads: machines (by id or name, by IP at a time, their users and alerts), files, IPs and users (§3.2)."""

from __future__ import annotations

import re

from .context import Context
from .envelopes import api_error
from .messages import Response, dumps
from .odata import Field, parse_datetime
from .pages import entity, not_found, odata_list, plain_list
from .stores import normalise_ip
from .world import DAY, HOUR, now_ticks

#: ``$filter`` properties of ``/api/machines`` (get-machines.md).
MACHINE_FIELDS = {
    "computerDnsName": Field.of("string", "computerDnsName"),
    "id": Field.of("string", "id"),
    "version": Field.of("string", "version"),
    "deviceValue": Field.of("enum", "deviceValue", ("Normal", "Low", "High")),
    "aadDeviceId": Field.of("string", "aadDeviceId"),
    "lastSeen": Field.of("datetime", "lastSeen"),
    "exposureLevel": Field.of("enum", "exposureLevel", ("None", "Low", "Medium", "High")),
    "onboardingStatus": Field.of("enum", "onboardingStatus",
                                 ("Onboarded", "CanBeOnboarded", "Unsupported", "InsufficientInfo")),
    "lastIpAddress": Field.of("string", "lastIpAddress"),
    "healthStatus": Field.of("enum", "healthStatus", ("Active", "Inactive", "ImpairedCommunication", "NoSensorData",
                                                      "NoSensorDataImpairedCommunication", "Unknown")),
    "osPlatform": Field.of("string", "osPlatform"),
    "riskScore": Field.of("enum", "riskScore", ("None", "Informational", "Low", "Medium", "High")),
    "rbacGroupId": Field.of("int", "rbacGroupId"),
}
MAX_TOP = 10_000
_HASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")


def _encode_machine(_query: object):
    """Machines are sent as stored, whatever the query."""
    return dumps


def list_machines(ctx: Context) -> Response:
    """``GET /api/machines`` with ``$filter``, ``$top`` (≤ 10,000) and ``$skip``."""
    store = ctx.state.stores.machines
    return odata_list(ctx, store=store, key="machines", items=store.all(), fields=MACHINE_FIELDS,
                      fragment="Machines", encode=_encode_machine, max_top=MAX_TOP)


def get_machine(ctx: Context) -> Response:
    """``GET /api/machines/{id}``: by device id or computer DNS name."""
    machine = ctx.state.stores.machines.get(ctx.params["id"])
    if machine is None:
        return not_found(ctx, "Machine", ctx.params["id"])
    return entity(ctx, "Machine", dumps(machine))


def find_by_ip(ctx: Context) -> Response:
    """``GET /api/machines/findbyip(ip='...',timestamp=...)``: machines that had that IP around that time."""
    ip, stamp = ctx.params["ip"], ctx.params["timestamp"]
    if normalise_ip(ip) is None:
        return api_error(ctx.family, 400, f"Invalid IP address '{ip}'.", ctx.req, code="InvalidIpAddress")
    when = parse_datetime(stamp.strip("'"))
    if when is None:
        return api_error(ctx.family, 400, f"Invalid timestamp '{stamp}'.", ctx.req, code="InvalidInput")
    if when < now_ticks() - 30 * DAY:
        return api_error(ctx.family, 400, "The given timestamp must be within the last 30 days.", ctx.req,
                         code="InvalidInput")
    # A machine answers for the 15 minutes around each report; seeded machines keep their IP all along.
    found = [m for m in ctx.state.stores.machines.by_ip(ip)
             if (parse_datetime(m["firstSeen"]) or 0) <= when <= (parse_datetime(m["lastSeen"]) or 0) + HOUR // 4]
    return plain_list(ctx, "Machines", found)


def logon_users(ctx: Context) -> Response:
    """``GET /api/machines/{id}/logonusers``."""
    machine = ctx.state.stores.machines.get(ctx.params["id"])
    if machine is None:
        return not_found(ctx, "Machine", ctx.params["id"])
    return plain_list(ctx, "Users", ctx.state.stores.machines.logon_users(machine["id"]))


def _bad_hash(ctx: Context, value: str) -> Response:
    return api_error(ctx.family, 400, f"Invalid hash value '{value}': give a SHA1 or SHA256.", ctx.req,
                     code="InvalidHashValue")


def get_file(ctx: Context) -> Response:
    """``GET /api/files/{sha1|sha256}``."""
    value = ctx.params["hash"]
    if not _HASH.fullmatch(value):
        return _bad_hash(ctx, value)
    found = ctx.state.stores.files.get(value)
    if found is None:
        return not_found(ctx, "File", value)
    return entity(ctx, "Files/$entity", dumps({k: v for k, v in found.items() if not k.startswith("_")}))


def _look_back(ctx: Context) -> Response | None:
    text = ctx.req.query.get("lookBackHours")
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 720:
        return api_error(ctx.family, 400, f"Invalid lookBackHours '{text}': a whole number of hours from 1 to 720.",
                         ctx.req, code="InvalidInput")
    return None


def file_stats(ctx: Context) -> Response:
    """``GET /api/files/{hash}/stats[?lookBackHours=..]``."""
    value = ctx.params["hash"]
    if not _HASH.fullmatch(value):
        return _bad_hash(ctx, value)
    if (bad := _look_back(ctx)) is not None:
        return bad
    found = ctx.state.stores.files.get(value)
    if found is None:
        return not_found(ctx, "File", value)
    stats = found["_stats"]
    body = {"sha1": found["sha1"], "organizationPrevalence": stats["organizationPrevalence"],
            "orgFirstSeen": stats["orgFirstSeen"], "orgLastSeen": stats["orgLastSeen"],
            "globallyPrevalence": found["globalPrevalence"], "globalFirstObserved": found["globalFirstObserved"],
            "globalLastObserved": found["globalLastObserved"], "topFileNames": stats["topFileNames"]}
    return entity(ctx, "microsoft.windowsDefenderATP.api.InOrgFileStats", dumps(body))


def ip_stats(ctx: Context) -> Response:
    """``GET /api/ips/{ip}/stats``: a valid IP never seen is 200 with prevalence 0; an invalid one is 400."""
    ip = ctx.params["ip"]
    if normalise_ip(ip) is None:
        return api_error(ctx.family, 400, f"Invalid IP address '{ip}'.", ctx.req, code="InvalidIpAddress")
    if (bad := _look_back(ctx)) is not None:
        return bad
    found = ctx.state.stores.ips.get(ip)
    body = {**found, "ipAddress": ip} if found else {
        "ipAddress": ip, "organizationPrevalence": 0, "orgFirstSeen": None, "orgLastSeen": None}
    return entity(ctx, "microsoft.windowsDefenderATP.api.InOrgIPStats", dumps(body))


def user_machines(ctx: Context) -> Response:
    """``GET /api/users/{name}/machines``: the user *name* (not the UPN); unknown users get an empty list."""
    return plain_list(ctx, "Machines", ctx.state.stores.machines.of_user(ctx.params["name"]))
