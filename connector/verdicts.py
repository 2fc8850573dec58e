"""Alert and incident verdicts: statuses, classifications and the determinations each allows.

Values are accepted in any case and in the spellings Microsoft's pages disagree on
(``compromisedAccount`` / ``compromisedUser``, ``notMalicious`` / ``clean``...), and sent in the
API's own spelling: camelCase on Graph, PascalCase on the legacy APIs. A determination that does
not belong to its classification is refused before anything is sent, with the valid pairs listed.
"""

from __future__ import annotations

from .errors import BadRequestError

#: classification -> the determinations it allows (Graph spelling).
PAIRS: dict[str, tuple[str, ...]] = {
    "truePositive": ("multiStagedAttack", "maliciousUserActivity", "compromisedUser", "malware", "phishing",
                     "unwantedSoftware", "other"),
    "informationalExpectedActivity": ("securityTesting", "lineOfBusinessApplication", "confirmedUserActivity",
                                      "other"),
    "falsePositive": ("clean", "insufficientData", "other"),
}
_ALIASES = {"compromisedaccount": "compromisedUser", "notmalicious": "clean", "notenoughdatatovalidate":
            "insufficientData", "noenoughdatatovalidate": "insufficientData", "confirmedactivity":
            "confirmedUserActivity", "informational": "informationalExpectedActivity"}
ALERT_STATUSES = ("new", "inProgress", "resolved")
INCIDENT_STATUSES = ("active", "inProgress", "resolved", "redirected")


def _canonical(value: str, known: list[str] | tuple[str, ...], what: str) -> str:
    key = str(value).strip().replace("_", "").replace(" ", "").lower()
    key = _ALIASES.get(key, key).lower()
    for name in known:
        if name.lower() == key:
            return name
    raise BadRequestError(f"Unknown {what} {str(value)[:60]!r}. Use one of: {', '.join(known)}.")


def verdict(classification: str | None, determination: str | None) -> tuple[str | None, str | None]:
    """(classification, determination) in Graph's spelling, checked as a pair."""
    if classification is None and determination is None:
        return None, None
    if classification is None:
        raise BadRequestError("A determination needs its classification. Valid pairs: " + describe_pairs())
    cls = _canonical(classification, list(PAIRS), "classification")
    if determination is None:
        return cls, None
    allowed = PAIRS[cls]
    try:
        det = _canonical(determination, sorted({d for ds in PAIRS.values() for d in ds}), "determination")
    except BadRequestError:
        det = None
    if det not in allowed:
        raise BadRequestError(
            f"Determination {str(determination)[:60]!r} does not go with classification {cls!r}. Valid pairs: "
            + describe_pairs()
        )
    return cls, det


def status(value: str | None, known: tuple[str, ...]) -> str | None:
    """A status in Graph's spelling, or None."""
    return None if value is None else _canonical(value, known, "status")


def pascal(value: str | None) -> str | None:
    """The legacy APIs' spelling of a Graph value (``truePositive`` -> ``TruePositive``)."""
    return None if value is None else value[:1].upper() + value[1:]


def describe_pairs() -> str:
    """Every valid classification with its determinations, for messages."""
    return "; ".join(f"{c}: {', '.join(ds)}" for c, ds in PAIRS.items()) + "."
