"""Triage fields shared by alert and incident updates: status, classification, determination, assignee, tags.

Values are accepted case-insensitively, in Graph's camelCase or MDE's PascalCase, and under the spellings
where Microsoft's pages disagree (``NotMalicious``/``Clean``, ``ConfirmedActivity``/``ConfirmedUserActivity``,
...); they are stored in Graph's camelCase. A determination must belong to its classification.
"""

from __future__ import annotations

from typing import Any

CLASSIFICATIONS = ("unknown", "truePositive", "falsePositive", "informationalExpectedActivity")
DETERMINATIONS = {
    "truePositive": ("multiStagedAttack", "maliciousUserActivity", "compromisedUser", "malware", "phishing",
                     "unwantedSoftware", "apt", "other"),
    "informationalExpectedActivity": ("securityTesting", "lineOfBusinessApplication", "confirmedUserActivity",
                                      "securityPersonnel", "other"),
    "falsePositive": ("clean", "insufficientData", "other"),
    "unknown": ("unknown",),
}
ALL_DETERMINATIONS = tuple(dict.fromkeys(d for values in DETERMINATIONS.values() for d in values))
_ALIASES = {"notmalicious": "clean", "noenoughdatatovalidate": "insufficientData",
            "notenoughdatatovalidate": "insufficientData", "confirmedactivity": "confirmedUserActivity",
            "compromisedaccount": "compromisedUser", "notavailable": "unknown"}
ALERT_STATUSES = ("new", "inProgress", "resolved")
INCIDENT_STATUSES = ("active", "inProgress", "resolved", "redirected")


class TriageError(ValueError):
    """A triage update the service refuses (400)."""


def _canonical(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TriageError(f"Invalid value for '{name}': a string is required.")
    lookup = {a.lower(): a for a in allowed}
    found = lookup.get(value.lower()) or lookup.get(_ALIASES.get(value.lower(), "").lower())
    if found is None:
        raise TriageError(f"Invalid value '{value}' for '{name}'. Allowed: {', '.join(allowed)}.")
    return found


def parse_update(body: dict[str, Any], *, statuses: tuple[str, ...], current_classification: str,
                 allowed: tuple[str, ...]) -> dict[str, Any]:
    """Canonical changes (status, classification, determination, assignedTo, comment, tags) from a PATCH body.

    ``allowed`` lists the body properties this resource takes (matched case-insensitively); ``@odata.*`` keys
    are ignored. Raises :class:`TriageError`.
    """
    names = {a.lower(): a for a in allowed}
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@"):
            continue
        name = names.get(key.lower())
        if name is None:
            raise TriageError(f"Property '{key}' does not exist or cannot be updated. Updatable: {', '.join(allowed)}.")
        if name == "status":
            changes["status"] = _canonical(name, value, statuses)
        elif name == "classification":
            changes["classification"] = _canonical(name, value, CLASSIFICATIONS)
        elif name == "determination":
            changes["determination"] = _canonical(name, value, ALL_DETERMINATIONS)
        elif name == "assignedTo":
            if value is not None and not isinstance(value, str):
                raise TriageError("Invalid value for 'assignedTo': a string or null is required.")
            changes["assignedTo"] = value
        elif name == "comment":
            if not isinstance(value, str) or not value.strip():
                raise TriageError("Invalid value for 'comment': a non-empty string is required.")
            changes["comment"] = value
        elif name in ("tags", "customTags"):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise TriageError(f"Invalid value for '{name}': a list of strings is required.")
            changes["tags"] = list(value)
    if not changes:
        raise TriageError(f"The request body has nothing to update. Updatable: {', '.join(allowed)}.")
    classification = changes.get("classification", current_classification)
    if "determination" in changes and changes["determination"] not in DETERMINATIONS[classification]:
        raise TriageError(f"Determination '{changes['determination']}' does not go with classification "
                          f"'{classification}'. Allowed: {', '.join(DETERMINATIONS[classification])}.")
    return changes


def fitting_determination(classification: str, determination: str) -> str:
    """``determination`` if it still goes with ``classification``, else ``unknown`` (recalculated, as documented)."""
    return determination if determination in DETERMINATIONS[classification] else "unknown"
