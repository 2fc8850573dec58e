"""The emulator's state: tenants and apps, issued tokens, secrets, faults, the request log, quotas and caches.

Handlers read and change it through ``ctx.state``. It holds no routes and no sockets: the service
(:class:`emulator.Emulator`) adds those, and is itself a ``State``, so tests script the state directly on
the emulator (``emu.faults.add(...)``, ``emu.token_lifetime = 60``).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from .faults import FaultSet
from .identity import App, CertificateSpec, Directory, TokenRegistry
from .incident import INCIDENT, SeededIncident
from .quotas import QuotaTracker
from .requestlog import RequestLog
from .resultcache import ResultCache
from .stores import Stores
from .tables import TICKS_PER_SECOND
from .vault import SecretStore
from .world import (
    ACTION_OUTCOMES,
    ACTION_STATUSES,
    MachineAction,
    build_world,
    incident_for,
    make_alert,
    now_ticks,
)

#: Default number of items in one page of a list (a ``$top`` caps it further).
PAGE_SIZE = 100
# Seeded alerts are 1 ms apart, so their lastUpdateDateTime values are distinct and increasing.
_SEED_STEP = 10_000
_SEED_PER_INCIDENT = 25

#: Seconds a new machine action stays Pending, then InProgress, before it ends (``State.action_timing``).
DEFAULT_ACTION_TIMING = (1.0, 2.0)
#: Active custom indicators a tenant may hold (defender-api.md §3.4).
INDICATOR_QUOTA = 15_000

#: Key Vault secret seeded with the default app's client secret (handy for Key Vault-backed demos).
DEFAULT_SECRET_NAME = "defender-client-secret"


def _result_bytes(result: Any) -> int:
    """Size of a cached hunting result, for the cache's byte budget."""
    return len(result.results_json)


class State:
    """Everything the handlers share, with a default tenant and an app holding every role.

    ``token_lifetime`` (seconds) sets ``expires_in`` for tokens issued from then on;
    ``quotas.per_minute``/``per_hour`` tune hunting quotas, ``api_quotas`` the entity APIs' (100/minute for
    each family, 50 for legacy incidents); ``enforce_quotas=False`` turns them all off.

    ``stores`` holds the seeded world (machines, files, IPs, alerts, incidents, machine actions, indicators);
    ``page_size`` is the largest page a list returns and ``next_link_base`` (None: the request's own
    scheme://host:port) the origin put in ``@odata.nextLink``.

    Machine actions: ``action_timing = (pending_s, in_progress_s)`` times new actions; ``next_action_outcome``
    ("Failed", "TimeOut") ends the next one submitted that way, :meth:`set_device_action_outcome` every one on a
    device; :meth:`actions_on`, :meth:`finish_action` and :meth:`isolated` read and steer them.
    ``indicator_quota`` caps active custom indicators (15,000).
    """

    def __init__(self, enforce_quotas: bool = True, *, tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None) -> None:
        self.enforce_quotas = enforce_quotas
        self.token_lifetime = 3599
        self.directory = Directory()
        self.tokens = TokenRegistry()
        self.faults = FaultSet()
        self.requests = RequestLog()
        self.quotas = QuotaTracker()
        self.api_quotas = QuotaTracker(100, 1500, limits={"m365d-incidents": (50, 1500)})
        self.secrets = SecretStore()
        self.results: ResultCache[Any] = ResultCache(_result_bytes)
        self.stop_event = threading.Event()

        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.directory.add_tenant(self.tenant_id)
        app = self.directory.add_app(self.tenant_id, client_id or str(uuid.uuid4()), client_secret)
        self.client_id: str = app.client_id
        self.client_secret: str = app.client_secret or ""
        self.secrets.add(DEFAULT_SECRET_NAME, self.client_secret)

        self.page_size = PAGE_SIZE
        self.next_link_base: str | None = None
        self._anchor = now_ticks()
        self.stores = Stores(build_world(self._anchor))
        self._outcome_lock = threading.Lock()
        self._action_defaults()

    def _action_defaults(self) -> None:
        self.action_timing = DEFAULT_ACTION_TIMING
        self.next_action_outcome = None
        self._device_outcomes: dict[str, str] = {}
        self.indicator_quota = INDICATOR_QUOTA

    # ------------------------------------------------------------ scripting

    def add_tenant(self, tenant_id: str) -> None:
        """Register another tenant (GUID or domain name)."""
        self.directory.add_tenant(tenant_id)

    def add_app(self, tenant_id: str, client_id: str, client_secret: str | None = None,
                certificate: CertificateSpec = False, roles: Iterable[str] | None = None) -> App:
        """Register an app in a tenant; ``roles=None`` grants every role. Returns it (``.client_secret``).

        ``certificate``: the certificate (PEM text, DER bytes or ``x509.Certificate``) whose private key must
        sign the app's client assertions (a bad signature is AADSTS700027); ``True`` accepts any well-formed
        assertion.
        """
        return self.directory.add_app(tenant_id, client_id, client_secret, certificate, roles)

    def add_secret(self, name: str, value: str, version: str | None = None) -> str:
        """Store a Key Vault secret version (current from now on); returns the version id."""
        return self.secrets.add(name, value, version)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next API call with one gets 401)."""
        self.tokens.expire_all()

    def seed_alerts(self, n: int) -> list[str]:
        """Add ``n`` alerts (Graph alerts_v2 and MDE /api/alerts alike) newer than every other one, with
        distinct, increasing ``lastUpdateDateTime`` values ending about now; returns their ids, oldest first.

        They sit on the seeded machines and group 25 to an incident (new incidents).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        alerts, incidents = self.stores.alerts, self.stores.incidents
        machines = self.stores.machines.all()
        first = alerts.next_seq(n)
        start = max(alerts.latest() + 1, now_ticks() - n * _SEED_STEP)
        next_incident = max((i.id for i in incidents.all()), default=1_999) + 1
        rng = random.Random(first)
        made = []
        for i in range(n):
            seq, when = first + i, start + i * _SEED_STEP
            made.append(make_alert(rng, i, machines[(seq * 7) % len(machines)], when, when,
                                   next_incident + i // _SEED_PER_INCIDENT, seq,
                                   alert_id=f"da{638_500_000_000_000_000 + seq}_{seq * 2_654_435_761 % 2**31}"))
        groups = [made[k:k + _SEED_PER_INCIDENT] for k in range(0, n, _SEED_PER_INCIDENT)]
        seq = incidents.next_seq(len(groups))
        alerts.add(made)
        incidents.add(incident_for(g, g[0].incident_id, rng, seq + k) for k, g in enumerate(groups))
        return [a.id for a in made]

    @property
    def incident(self) -> SeededIncident:
        """The seeded incident every emulator serves (alert and incident ids, device, user, file, IP, process tree);
        see :mod:`emulator.incident`."""
        return INCIDENT

    # ------------------------------------------------------------ machine actions and indicators

    @property
    def action_timing(self) -> tuple[float, float]:
        """(seconds Pending, seconds InProgress) of machine actions submitted from now on."""
        return self._action_timing

    @action_timing.setter
    def action_timing(self, value: tuple[float, float]) -> None:
        pending, in_progress = (float(v) for v in value)
        if pending < 0 or in_progress < 0:
            raise ValueError("action_timing takes two non-negative numbers of seconds: (pending, in_progress)")
        self._action_timing = (pending, in_progress)

    @property
    def next_action_outcome(self) -> str | None:
        """How the next machine action submitted ends (Succeeded, Failed or TimeOut); used once, then None."""
        return self._next_action_outcome

    @next_action_outcome.setter
    def next_action_outcome(self, value: str | None) -> None:
        self._next_action_outcome = _outcome(value)

    def set_device_action_outcome(self, device: str, outcome: str | None) -> None:
        """Every action submitted on ``device`` (id or DNS name) from now on ends ``outcome``; None undoes it."""
        machine = self._machine(device)
        key = machine["id"].lower()
        if outcome is None:
            self._device_outcomes.pop(key, None)
        else:
            self._device_outcomes[key] = _outcome(outcome)  # type: ignore[assignment]

    def take_action_outcome(self, machine_id: str) -> str:
        """The outcome of an action being submitted on ``machine_id`` (consumes ``next_action_outcome``)."""
        with self._outcome_lock:
            chosen, self._next_action_outcome = self._next_action_outcome, None
        return chosen or self._device_outcomes.get(machine_id.lower(), "Succeeded")

    def action_times(self, created: int, outcome: str) -> tuple[int, int]:
        """(started, finished) ticks of an action created at ``created`` under the current timing.

        A TimeOut never starts: the device did not pick it up, so it stays Pending until it times out.
        """
        pending, in_progress = (int(s * TICKS_PER_SECOND) for s in self.action_timing)
        if outcome == "TimeOut":
            return created + pending + in_progress, created + pending + in_progress
        return created + pending, created + pending + in_progress

    def _machine(self, device: str) -> dict:
        machine = self.stores.machines.get(device)
        if machine is None:
            raise KeyError(f"no machine {device!r} in the emulator")
        return machine

    def actions_on(self, device: str, action_type: str | None = None) -> list[MachineAction]:
        """The machine actions on a device (id or DNS name), newest first; ``action_type`` narrows to one type.
        ``action.status(now_ticks())`` says where each one is."""
        machine = self._machine(device)
        return [a for a in self.stores.actions.of_machine(machine["id"])
                if action_type is None or a.type.lower() == action_type.lower()]

    def action_status(self, action_id: str) -> str:
        """The current status of a machine action."""
        action = self.stores.actions.get(action_id)
        if action is None:
            raise KeyError(f"no machine action {action_id!r}")
        return action.status(now_ticks())

    def finish_action(self, action_id: str, status: str = "Succeeded") -> None:
        """End a machine action now: Succeeded, Failed, TimeOut or Cancelled."""
        if status not in ACTION_STATUSES[2:]:
            raise ValueError(f"status must be one of {', '.join(ACTION_STATUSES[2:])}")
        action = self.stores.actions.get(action_id)
        if action is None:
            raise KeyError(f"no machine action {action_id!r}")
        now = now_ticks()

        def finish(a: MachineAction) -> None:
            a.started, a.finished = min(a.started, now), now
            if status == "Cancelled":
                a.cancelled, a.cancellation_requestor = now, "emulator"
            else:
                a.outcome = status
        self.stores.actions.change(action, finish)

    def isolated(self, device: str) -> bool:
        """Whether a device (id or DNS name) is isolated now: its latest Isolate/Unisolate that succeeded says."""
        now = now_ticks()
        done = [a for a in self.actions_on(device) if a.type in ("Isolate", "Unisolate") and a.status(now) == "Succeeded"]
        latest = max(done, key=lambda a: (a.finished, a.seq), default=None)
        return latest is not None and latest.type == "Isolate"

    def reset_world(self) -> None:
        """Put machines, files, IPs, alerts, incidents, machine actions and indicators back as seeded (undoing
        updates and seed_alerts)."""
        self.stores.load(build_world(self._anchor))

    def reset(self) -> None:
        """Clear faults, the request log and quota counters; restore the seeded world, the paging settings and the
        machine-action and indicator settings."""
        self.faults.clear()
        self.requests.clear()
        self.quotas.reset()
        self.api_quotas.reset()
        self.page_size = PAGE_SIZE
        self.next_link_base = None
        self._action_defaults()
        self.reset_world()


def _outcome(value: str | None) -> str | None:
    if value is not None and value not in ACTION_OUTCOMES:
        raise ValueError(f"an action outcome is one of {', '.join(ACTION_OUTCOMES)} (or None), not {value!r}")
    return value
