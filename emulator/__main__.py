"""``python -m emulator``: run the emulator until SIGINT/SIGTERM, printing how to reach it."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .service import DEFAULT_SECRET_NAME, Emulator


def _secret(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the emulator, print its coordinates, serve until told to stop."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Microsoft Defender + Entra ID + Key Vault emulator over HTTPS on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8443, help="port on 127.0.0.1 (0 = any free port; default 8443)")
    parser.add_argument("--state-dir", help="where to write (and reuse) the CA bundle; default: a temp dir")
    parser.add_argument("--no-quotas", action="store_true", help="do not enforce hunting quotas (45/min, 1500/h)")
    parser.add_argument("--tenant-id", help="fixed id for the seeded tenant (default: random GUID)")
    parser.add_argument("--client-id", help="fixed client id for the seeded app (default: random GUID)")
    parser.add_argument("--client-secret", help="fixed secret for the seeded app (default: random)")
    parser.add_argument("--secret", action="append", type=_secret, default=[], metavar="NAME=VALUE",
                        help="add a Key Vault secret (repeatable)")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="expires_in of issued tokens, seconds")
    args = parser.parse_args(argv)

    emu = Emulator(port=args.port, state_dir=args.state_dir, enforce_quotas=not args.no_quotas,
                   tenant_id=args.tenant_id, client_id=args.client_id, client_secret=args.client_secret)
    emu.token_lifetime = args.token_lifetime
    for name, value in args.secret:
        emu.add_secret(name, value)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emu.start()
    try:
        print(f"URL: {emu.base_url}")
        print(f"CA: {emu.ca_bundle}")
        print(f"TENANT: {emu.tenant_id}")
        print(f"CLIENT_ID: {emu.client_id}")
        print(f"CLIENT_SECRET: {emu.client_secret}")
        print(f"KEYVAULT_SECRET: {DEFAULT_SECRET_NAME}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
