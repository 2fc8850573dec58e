"""The query library: MSTICPy's names and parameters, typed parameters, rendering, user folders, and
every query run against the emulator through the real client."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from connector import ConfigurationError, connect
from connector.library import QueryLibrary
from emulator.kql import parse as emulator_parse
from emulator.predicates import tokenize
from emulator.tables import SCHEMAS

LIB = QueryLibrary()
QUERIES = list(LIB)
HOST = "wks-1007.contoso.local"

# MSTICPy's M365D family (msticpy-defender-provider.md §5.2): query -> its own parameters.
M365D = {
    "list_alerts": set(), "list_alerts_with_evidence": set(), "host_alerts": {"host_name"},
    "ip_alerts": {"ip_address"}, "url_alerts": {"url"}, "sha1_alerts": {"file_hash"}, "sha256_alerts": {"file_hash"},
    "process_alerts": {"file_name"}, "user_alerts": {"account_name"}, "registry_key_alerts": {"key_name"},
    "mail_message_alerts": {"message_id"}, "mailbox_alerts": {"mailbox"}, "application_alerts": {"app_name"},
    "list_file_events_for_filename": {"file_name"}, "list_file_events_for_path": {"path"},
    "list_file_events_for_hash": {"file_hash"}, "list_file_events_for_host": {"host_name", "device_id"},
    "logons_for_account": {"account_name"}, "logons_for_ip": {"ip_address"}, "logons_for_host": {"host_name"},
    "list_connections": set(), "host_connections": {"host_name"}, "ip_connections": {"ip_address"},
    "url_connections": {"url"}, "protocol_connections": {"protocol"}, "list_host_processes": {"host_name"},
    "process_creations": {"process_identifier"}, "process_paths": {"file_path"}, "process_cmd_line": {"cmd_line"},
    "user_logons": {"account_name"}, "user_processes": {"account_name"}, "user_files": {"account_name"},
    "user_network": {"account_name"},
}
# §5.3, with AlertInfo/AlertEvidence in place of DeviceAlertEvents.
MDE = {"list_alerts", "host_alerts", "ip_alerts", "url_alerts", "sha1_alerts", "list_files", "file_path",
       "list_filehash", "list_file_events_for_filename", "list_file_events_for_path", "list_file_events_for_hash",
       "list_file_events_for_host", "list_connections", "host_connections", "ip_connections", "url_connections",
       "protocol_connections", "list_host_processes", "process_creations", "process_for_hash", "process_paths",
       "process_cmd_line", "user_logons", "user_processes", "user_files", "user_network"}
COMMON = {"start", "end", "add_query_items"}


class Recorder:
    """A runner that records what it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, query: str, **options) -> pd.DataFrame:
        self.calls.append((query, options))
        return pd.DataFrame({"x": [1]})


# ---------------------------------------------------------------- MSTICPy parity


def test_the_msticpy_families_are_all_there_with_their_parameters():
    assert {"M365D", "MDE", "M365DHunting"} <= set(LIB.families)
    assert set(LIB.M365D.list()) >= set(M365D)
    for name, own in M365D.items():
        params = set(LIB.get(f"M365D.{name}").parameters)
        assert own | COMMON <= params, name
        assert params - own - COMMON <= {"table", "time_column"}, name
    assert set(LIB.MDE.list()) == MDE
    assert LIB.MDATP.host_alerts.query is LIB.get("MDE.host_alerts") or \
        LIB.MDATP.host_alerts.render(host_name="a", start="2024-05-01", end="2024-05-02") == \
        LIB.MDE.host_alerts.render(host_name="a", start="2024-05-01", end="2024-05-02")
    assert LIB.get("M365D.process_cmd_line").parameters["cmd_line"].type == "list[str]"
    assert LIB.get("MDE.process_cmd_line").parameters["cmd_line"].type == "str"
    assert LIB.get("M365D.protocol_connections").parameters["protocol"].type == "int"


def test_msticpys_template_bugs_are_fixed():
    paths = LIB.M365D.process_paths.render(file_path="\\Temp\\", start="2024-05-01", end="2024-05-02")
    assert "| where FolderPath contains" in paths and "FileName" not in paths
    host = LIB.M365D.list_file_events_for_host.render(device_id="abc", start="2024-05-01", end="2024-05-02")
    assert "DeviceId =~" in host and "DeviceID" not in host
    for query in QUERIES:
        assert "DeviceAlertEvents" not in query.template and "DeviceID" not in query.template, query.full_name
        # Every query honours start and end (MSTICPy's hunting queries ignore them).
        assert "{start}" in query.template and "{end}" in query.template, query.full_name


def test_hunting_families_cover_persistence_lateral_movement_and_credential_access():
    tags = {tag for q in QUERIES if q.family == "M365DHunting" for tag in q.tags}
    assert {"persistence", "lateral-movement", "credential-access"} <= tags
    assert {"scheduled_task_creation", "remote_logons", "lsass_dump", "brute_force",
            "accessibility_persistence"} <= set(LIB.M365DHunting.list())
    assert LIB.MDEHunting.brute_force.query.full_name == "M365DHunting.brute_force"


# ---------------------------------------------------------------- every query


@pytest.mark.parametrize("query", QUERIES, ids=[q.full_name for q in QUERIES])
def test_every_query_renders_valid_kql_for_its_defaults(query):
    before = datetime.now(UTC)
    text = query.render(**query.examples())
    assert "{" not in text.replace("dynamic({", "") and "}" not in text
    times = [datetime.fromisoformat(t) for t in re.findall(r"datetime\(([^)]*)\)", text)]
    assert times and len(set(times)) == 2, "start and end, rendered as datetime literals"
    start, end = min(times), max(times)
    assert end - start == timedelta(days=1) and before - timedelta(seconds=5) <= end <= datetime.now(UTC)
    assert text.split("\n", 1)[0].strip() in SCHEMAS
    plan = emulator_parse(text)  # the emulator's parser: syntax, and every column it names
    assert plan.steps[0][0] == "where"


@pytest.mark.parametrize("query", QUERIES, ids=[q.full_name for q in QUERIES])
def test_every_query_runs_against_the_emulator(emu_kwargs, query):
    with connect(**emu_kwargs) as client:
        lib = QueryLibrary(client)
        df = lib.run(query.full_name, **query.examples())
    assert isinstance(df, pd.DataFrame) and df.attrs["query_name"] == query.full_name
    assert len(df.columns) > 0  # a typed frame, with the schema's columns even when empty
    for column in ("Timestamp", "FirstSeen", "LastSeen"):
        if column in df.columns:
            assert str(df[column].dtype) == "datetime64[ns, UTC]"


def test_library_frame_is_the_raw_hunt_frame(emu_kwargs):
    window = {"start": datetime.now(UTC) - timedelta(hours=20), "end": datetime.now(UTC) - timedelta(hours=2)}
    with connect(**emu_kwargs) as client:
        lib = QueryLibrary(client)
        via_library = lib.M365D.host_connections(host_name="wks-1007", **window)
        raw = client.run_hunting_query(lib.M365D.host_connections.render(host_name="wks-1007", **window))
    assert via_library.attrs.pop("query_name") == "M365D.host_connections"
    pd.testing.assert_frame_equal(via_library, raw)
    assert via_library.dtypes.equals(raw.dtypes) and len(raw) == 100


def test_a_triage_query_for_one_device_returns_only_that_device(emu_kwargs):
    with connect(**emu_kwargs) as client:
        lib = QueryLibrary(client)
        processes = lib.M365D.list_host_processes(host_name=HOST)
        device_id = processes["DeviceId"].iat[0]
        files = lib.M365D.list_file_events_for_host(device_id=device_id)
        network = lib.MDE.host_connections(hostname="wks-1007", start="-12h")
        alerts = lib.M365D.host_alerts(host_name=HOST, start="-3d")
    assert len(processes) == 100 and set(processes["DeviceName"]) == {HOST}
    assert len(files) == 100 and set(files["DeviceId"]) == {device_id}
    assert len(network) == 100 and set(network["DeviceName"]) == {HOST}
    assert network["Timestamp"].min() >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=12, minutes=1)
    assert len(alerts) > 0 and set(alerts["DeviceName"]) == {HOST} and set(alerts["EntityType"]) == {"Machine"}
    assert {"Category", "Severity"} <= set(alerts.columns) and "AlertId1" not in alerts.columns


# ---------------------------------------------------------------- calling


def test_print_query_render_and_help_never_run():
    runner = Recorder()
    lib = QueryLibrary(runner)
    text = lib.M365D.host_alerts(host_name="wks-01", print_query=True)
    assert isinstance(text, str) and 'DeviceName has "wks-01"' in text
    assert lib.M365D.host_alerts("print", host_name="wks-01").startswith("AlertEvidence")
    assert lib.M365D.host_alerts(host_name="wks-01", debug_query=True).startswith("AlertEvidence")
    assert lib.render("M365D.host_alerts", host_name="wks-01").startswith("AlertEvidence")
    assert lib.M365D.host_alerts.render(host_name="wks-01").startswith("AlertEvidence")
    assert "host_name (str, required" in lib.M365D.host_alerts.help()
    assert lib.M365D.host_alerts.__doc__ == lib.help("M365D.host_alerts")
    assert runner.calls == []


def test_running_goes_through_the_hook_with_options_only_when_given():
    runner = Recorder()
    lib = QueryLibrary(runner)
    df = lib.M365D.list_alerts(start="-2h")
    assert df.attrs["query_name"] == "M365D.list_alerts"
    (query, options), = runner.calls
    assert query.startswith("AlertInfo\n| where Timestamp between (datetime(") and options == {}
    lib.run("M365DHunting.brute_force", min_failures=3, timespan="P1D", timeout=30)
    query, options = runner.calls[-1]
    assert options == {"timespan": "P1D", "timeout": 30} and "| where Failures >= 3" in query


def test_a_library_without_a_runner_lists_and_renders_but_does_not_run():
    with pytest.raises(ConfigurationError, match="no client to run M365D.list_alerts"):
        LIB.M365D.list_alerts()
    with pytest.raises(ConfigurationError, match="run_hunting_query"):
        QueryLibrary(runner=42)


def test_unknown_parameter_names_the_allowed_ones():
    with pytest.raises(ConfigurationError) as caught:
        LIB.M365D.host_alerts(hostnme="wks-01", print_query=True)
    message = str(caught.value)
    assert "M365D.host_alerts has no parameter 'hostnme'" in message and "Did you mean 'hostname'?" in message
    assert "Allowed: host_name, table, start, end, time_column, add_query_items." in message


def test_required_parameters_and_require_any():
    with pytest.raises(ConfigurationError, match=r"M365D.host_alerts needs host_name: host_name \(str, required, "
                                                 r"e.g. 'wks-1007.contoso.local'"):
        LIB.M365D.host_alerts.render()
    with pytest.raises(ConfigurationError, match="needs at least one of host_name, device_id"):
        LIB.M365D.list_file_events_for_host.render()
    assert "DeviceName has" in LIB.M365D.list_file_events_for_host.render(host_name="wks-01")


def test_aliases_and_typed_values():
    render = LIB.M365D.protocol_connections.render
    assert "RemotePort == 445" in render(port="445") and "RemotePort == 3389" in render(protocol=3389)
    for bad in ("445 or 1 == 1", "https", 44.5, True):
        with pytest.raises(ConfigurationError, match="protocol must be an integer"):
            render(protocol=bad)
    with pytest.raises(ConfigurationError, match="given twice"):
        render(protocol=1, port=2)
    cmd = LIB.M365D.process_cmd_line.render
    assert 'has_any ("comsvcs", "MiniDump")' in cmd(cmd_line="comsvcs, MiniDump")  # MSTICPy's comma string
    assert 'has_any ("a,b")' in cmd(command_line=["a,b"])
    assert "has_any (dynamic([]))" in cmd(cmd_line=[])
    ports = LIB.M365DHunting.remote_service_connections.render
    assert "RemotePort in (22, 3389)" in ports(ports=[22, "3389"])
    with pytest.raises(ConfigurationError, match=r"ports\[0\] must be an integer"):
        ports(ports=["22; take 1"])
    with pytest.raises(ConfigurationError, match="table must be a table or column name"):
        LIB.M365D.list_alerts.render(table="AlertInfo | take 1000000")
    assert LIB.M365D.list_alerts.render(table="AlertEvidence").startswith("AlertEvidence\n")
    with pytest.raises(ConfigurationError, match="add_query_items .*must start with '|'"):
        LIB.M365D.list_alerts.render(add_query_items="take 10")
    assert LIB.M365D.list_alerts.render(add_query_items="| take 10").endswith("\n| take 10")


def test_start_and_end_default_to_the_last_day_and_take_relative_forms():
    def window(**params) -> tuple[datetime, datetime]:
        text = LIB.M365D.list_connections.render(**params)
        start, end = (datetime.fromisoformat(t) for t in re.findall(r"datetime\(([^)]*)\)", text))
        return start, end

    now = datetime.now(UTC)
    start, end = window()
    assert end - start == timedelta(days=1) and abs(end - now) < timedelta(seconds=5)
    start, end = window(start="-3d", end="-12h")
    assert abs(end - start - timedelta(days=2, hours=12)) < timedelta(seconds=1)
    start, _ = window(start="-3d@d")
    assert start.hour == start.minute == 0 and (now - start).days == 3
    start, end = window(start="2024-05-01T08:00:00Z", end=datetime(2024, 5, 2, 10, 0))
    assert (start, end) == (datetime(2024, 5, 1, 8, tzinfo=UTC), datetime(2024, 5, 2, 10, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match="start .* is after end"):
        window(start="-1d", end="-2d")
    with pytest.raises(ConfigurationError, match="start is not a time"):
        window(start="last tuesday")


# ---------------------------------------------------------------- finding queries


def test_list_help_and_attribute_access():
    assert LIB.list("M365D") == sorted(LIB.list("M365D")) and "M365D.host_alerts" in LIB.list("M365D")
    assert LIB.list("mdatp") == LIB.list("MDE")  # aliases and any case
    assert set(LIB.list(search="lsass")) >= {"M365DHunting.lsass_dump"}
    assert "host_alerts" in dir(LIB.M365D) and "M365D" in dir(LIB)
    summary = LIB.help()
    assert "M365DHunting:" in summary and "  lsass_dump: LSASS memory dumps" in summary
    help_text = LIB.help("M365D.list_host_processes")
    assert "start (datetime, default '-1d')" in help_text and "| where DeviceName has {host_name}" in help_text
    assert "Defined in: connector/queries/m365d_process.yaml" in help_text
    with pytest.raises(AttributeError, match="Did you mean host_alerts"):
        LIB.M365D.host_alert  # noqa: B018
    with pytest.raises(AttributeError, match="No query family 'Nope'"):
        LIB.Nope  # noqa: B018
    assert LIB.get("brute_force").full_name == "M365DHunting.brute_force"  # a name one family has
    assert LIB.get("list_alerts").name == "list_alerts"  # the same query in two families
    with pytest.raises(ConfigurationError, match="in several families; say which: M365D.process_cmd_line, "
                                                 "MDE.process_cmd_line"):
        LIB.get("process_cmd_line")
    with pytest.raises(ConfigurationError, match="No query 'M365D.nope'"):
        LIB.get("M365D.nope")
    assert "M365D.list_alerts" in LIB and "M365D.nope" not in LIB


# ---------------------------------------------------------------- user queries


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_user_folders_add_and_override_queries(tmp_path):
    _write(tmp_path / "mine" / "triage.yaml", """\
        metadata:
          data_families: [Triage]
        sources:
          rare_processes:
            description: Processes seen on few devices.
            args:
              query: |
                DeviceProcessEvents
                | where {time_column} between ({start} .. {end})
                | summarize Devices=dcount(DeviceId) by FileName
                | where Devices <= {max_devices}
            parameters:
              max_devices: {type: int, default: 2, description: At most this many devices.}
        """)
    _write(tmp_path / "mine" / "deeper" / "override.yml", """\
        metadata:
          data_families: [M365D]
        sources:
          list_alerts:
            description: Only high-severity alerts.
            args:
              query: |
                AlertInfo
                | where {time_column} between ({start} .. {end})
                | where Severity == {severity}
            parameters:
              severity: {type: str, default: High, choices: [Informational, Low, Medium, High]}
        """)
    runner = Recorder()
    lib = QueryLibrary(runner, paths=[tmp_path / "mine"])
    assert "Triage.rare_processes" in lib.list() and "Triage" in lib.families
    assert "| where Devices <= 5" in lib.Triage.rare_processes(max_devices=5, print_query=True)
    assert 'Severity == "Medium"' in lib.M365D.list_alerts.render(severity="Medium")
    with pytest.raises(ConfigurationError, match="severity must be one of"):
        lib.M365D.list_alerts.render(severity='High" or 1==1 //')
    assert LIB.get("M365D.list_alerts").description == "Alerts raised in the time window."  # others untouched
    other = QueryLibrary()
    assert other.add_query_path(tmp_path / "mine" / "triage.yaml") == ["Triage.rare_processes"]
    assert QueryLibrary(paths=str(tmp_path / "mine"), builtin=False).families == ["M365D", "Triage"]


def test_msticpy_query_files_load_and_are_escaped(tmp_path):
    _write(tmp_path / "kql_custom.yaml", """\
        metadata:
          version: 1
          description: A query file in MSTICPy's format
          data_environments: [MDE, M365D]
          data_families: [MDATP]
        defaults:
          parameters:
            table: {description: Table name, type: str, default: DeviceProcessEvents}
            start: {description: Query start time, type: datetime}
            end: {description: Query end time, type: datetime}
            add_query_items: {description: Additional query clauses, type: str, default: ""}
        sources:
          procs_by_cmdline:
            description: Processes by host and command-line terms
            args:
              query: '
                {table}
                | where Timestamp >= datetime({start})
                | where Timestamp <= datetime({end})
                | where DeviceName has "{host_name}"
                | where ProcessCommandLine has_any ({cmd_line})
                {add_query_items}'
            parameters:
              host_name: {description: Host, type: str}
              cmd_line: {description: Terms, type: list}
        """)
    lib = QueryLibrary(paths=[tmp_path])
    text = lib.MDE.procs_by_cmdline.render(host_name='x" | take 1000000 //', cmd_line=["a'b", "c"],
                                           start="2024-05-01", end="2024-05-02", add_query_items="| take 5")
    assert "Timestamp >= datetime(2024-05-01T00:00:00.0000000Z)" in text
    assert 'DeviceName has "x\\" | take 1000000 //"' in text
    assert """has_any ("a'b", "c")""" in text
    plan = emulator_parse(text)
    assert [op for op, _ in plan.steps] == ["where", "where", "where", "where", "take"] and plan.base_rows == 5
    assert [t.value for t in tokenize(plan.steps[2][1]) if t.kind == "str"] == ['x" | take 1000000 //']
    with pytest.raises(ConfigurationError, match="start"):  # MSTICPy's start has no default: required here too
        lib.MDE.procs_by_cmdline.render(host_name="x", cmd_line=["a"])


@pytest.mark.parametrize("query, message", [
    ('T | where A == "prefix{host}"', "placeholder inside the string literal"),
    ("T | where A == {nope}", "uses {nope}, which is not a declared parameter"),
    ('T | where A == "unterminated', "not closed"),
])
def test_unsafe_or_broken_templates_are_refused_when_loading(query, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        QueryLibrary(builtin=False).add_query("q", query, parameters={"host": {"type": "str"}})


@pytest.mark.parametrize("yaml_text, message", [
    ("sources: [1, 2]", "no 'sources' mapping"),
    ("sources:\n  q:\n    args: {}\n", "has no args.query"),
    ("sources:\n  q:\n    args: {query: 'T | where {x}'}\n    parameters:\n      x: {type: blob}\n", "unknown type 'blob'"),
    ("sources:\n  q:\n    args: {query: 'T | where {timespan}'}\n    parameters:\n      timespan: {type: str}\n",
     "reserved"),
    ("sources:\n  q:\n    args: {query: 'T | where A == {x}'}\n    parameters:\n      x: {type: int, default: abc}\n",
     "the default of 'x' is not valid"),
    ("sources: {q: [unclosed", "not valid YAML"),
])
def test_bad_query_files_say_what_is_wrong(tmp_path, yaml_text, message):
    _write(tmp_path / "bad.yaml", yaml_text)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        QueryLibrary(paths=[tmp_path / "bad.yaml"])
    assert "bad.yaml" in str(caught.value)


def test_add_query_from_python():
    runner = Recorder()
    lib = QueryLibrary(runner, builtin=False)
    query = lib.add_query("by_image", "DeviceProcessEvents | where {time_column} between ({start} .. {end}) "
                                      "| where FileName =~ {image}",
                          description="Processes by image name", parameters={"image": {"type": "str"}})
    assert query.full_name == "Custom.by_image" and lib.list() == ["Custom.by_image"]
    lib.Custom.by_image(image="CMD.EXE")
    assert runner.calls[-1][0].endswith('| where FileName =~ "CMD.EXE"')
    assert set(query.parameters) == {"image", "start", "end", "time_column"}
