"""``python -m emulator``: run the emulator until SIGINT/SIGTERM, printing how to reach it.

``make emulator`` runs it on fixed ports (8443 for sign-in, Key Vault and every API; 8444 Graph only;
8445 MDE only) with a state directory, so the tenant id, client id, secret and CA survive restarts.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .faults import KINDS, Fault, parse_fault_spec
from .howto import everything
from .service import Emulator


def _secret(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def _fault(text: str) -> Fault:
    try:
        return parse_fault_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Microsoft Defender + Entra ID + Key Vault emulator over HTTPS on 127.0.0.1.",
        epilog="Fault kinds: " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()),
    )
    parser.add_argument("--port", type=int, default=8443,
                        help="port of the base URL (sign-in, Key Vault, every API) on 127.0.0.1; 0 = any free port")
    parser.add_argument("--graph-port", type=int, default=None,
                        help="port serving only Microsoft Graph (default: --port + 1, or any free port with --port 0)")
    parser.add_argument("--mde-port", type=int, default=None,
                        help="port serving only the MDE / M365D /api paths (default: --port + 2, or any free port)")
    parser.add_argument("--state-dir", help="where the CA, tenant id, client id and secret are kept across restarts "
                                            "(default: a temporary directory, new every run)")
    parser.add_argument("--no-quotas", action="store_true", help="do not enforce the documented API quotas")
    parser.add_argument("--tenant-id", help="fixed id for the seeded tenant (default: saved, else a random GUID)")
    parser.add_argument("--client-id", help="fixed client id for the seeded app (default: saved, else random)")
    parser.add_argument("--client-secret", help="fixed secret for the seeded app (default: saved, else random)")
    parser.add_argument("--secret", action="append", type=_secret, default=[], metavar="NAME=VALUE",
                        help="add a Key Vault secret (repeatable)")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="expires_in of issued tokens, seconds")
    parser.add_argument("--page-size", type=int, default=None, help="largest page a list returns (default 100)")
    parser.add_argument("--seed-alerts", type=int, default=0, metavar="N", help="add N recent alerts at start")
    parser.add_argument("--fault", action="append", type=_fault, default=[], metavar="KIND[:name=value,...]",
                        help="arm a fault at start (repeatable), e.g. status:status=503,times=2 or "
                             "slow:delay=3,api=graph or drop:path=/oauth2/,times=inf")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the emulator, print its coordinates, serve until told to stop."""
    args = _parser().parse_args(argv)
    graph_port = args.graph_port if args.graph_port is not None else (args.port + 1 if args.port else 0)
    mde_port = args.mde_port if args.mde_port is not None else (args.port + 2 if args.port else 0)
    emu = Emulator(port=args.port, state_dir=args.state_dir, enforce_quotas=not args.no_quotas,
                   tenant_id=args.tenant_id, client_id=args.client_id, client_secret=args.client_secret,
                   graph_port=graph_port, mde_port=mde_port)
    emu.token_lifetime = args.token_lifetime
    if args.page_size:
        emu.page_size = args.page_size
    for name, value in args.secret:
        emu.add_secret(name, value)
    for fault in args.fault:
        emu.faults.add(fault)
    if args.seed_alerts:
        emu.seed_alerts(args.seed_alerts)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        emu.start()
    except OSError as error:
        print(f"cannot listen on 127.0.0.1 ports {args.port}, {graph_port}, {mde_port}: {error}", file=sys.stderr)
        return 1
    try:
        print(everything(emu, args.state_dir), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
