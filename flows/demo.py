"""`make demo`: start the built-in emulator, connect with a connection string, run a hunt, show the frame.

No Azure tenant needed: the emulator speaks Entra ID and the Defender hunting APIs on loopback HTTPS.
"""

from __future__ import annotations

import sys
import time

import pandas as pd

from connector import connect
from emulator import Emulator

QUERY = "DeviceProcessEvents | take 1000"


def main() -> int:
    """Run the demo; returns the process exit code."""
    with Emulator() as emu:
        print(f"Emulator (Entra ID + Defender APIs) at {emu.base_url}; CA bundle {emu.ca_bundle}")
        conn = (
            f"tenant_id='{emu.tenant_id}'; client_id='{emu.client_id}'; client_secret='{emu.client_secret}'; "
            f"authority_host='{emu.base_url}'; api_root='{emu.base_url}'; ca_bundle='{emu.ca_bundle}'"
        )
        with connect(conn) as client:
            print(f"Connected: {client!r}")
            started = time.perf_counter()
            df = client.run_hunting_query(QUERY, timespan="P7D")
            elapsed = time.perf_counter() - started
        print(f"\n{QUERY!r} -> {len(df):,} rows x {len(df.columns)} columns in {elapsed:.2f}s\n")
        with pd.option_context("display.width", 160, "display.max_columns", 8, "display.max_colwidth", 40):
            print(df[["Timestamp", "DeviceName", "FileName", "ProcessId", "AccountName", "AdditionalFields"]].head(10))
        print("\nColumn types (typed from the response schema):")
        print(df.dtypes.astype(str).value_counts().to_string())
        print("\nA few of them:")
        print(df.dtypes[["Timestamp", "ProcessId", "FileName", "AdditionalFields"]].to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
