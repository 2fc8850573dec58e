"""Read Defender settings from MSTICPy's ``msticpyconfig.yaml``.

Sections ``DataProviders.MicrosoftDefender`` (the default instance) and
``DataProviders.MicrosoftDefender-<Instance>``; under ``Args``: ``TenantId``, ``ClientId``,
``ClientSecret`` and optionally every other setting that can be written as text, by the
``msticpy_key`` of :data:`connector.settings.SETTING_FIELDS` (``Cloud``, ``ApiType``,
``Certificate``, ``PrivateKey``, ``PrivateKeySecret``, ``AuthorityHost``, ``apiRoot``,
``GraphRoot``, ``MdeRoot``, ``M365dRoot``, ``CaBundle``, ``Timeout``) or any of its aliases. Keys
are case-insensitive and ignore ``_``/``-`` (unlike MSTICPy, which ignores ``Cloud`` spelt that
way); MSTICPy-only keys (``Location``, ``ApiVersion``, ``TokenCachePath``, ``AuthType``) are
skipped, so one file serves both tools.
A secret value is a string, ``{EnvironmentVar: NAME}`` or ``{KeyVault: ...}``; Key Vault references
use the file's ``KeyVault`` section (``VaultName``, ``Authority``) and MSTICPy's default secret name
(the setting's path with non-alphanumerics as ``-``). ``VaultName`` may also be a full vault URL.

The file is found as MSTICPy finds it: an explicit path, else ``$MSTICPYCONFIG``, else
``./msticpyconfig.yaml``, else ``~/.msticpy/msticpyconfig.yaml``.

The file may come from someone else (a shared notebook folder, a ticket attachment), so it is read
defensively: at most 1 MiB and 20,000 values, nesting at most 50 levels deep, no alias (``*name``) to a mapping or
list (the "billion laughs" expansion), no duplicate keys; each is a :class:`ConfigurationError`
naming the file and line. ``UserName`` (MSTICPy's delegated sign-in) is refused with advice.
Values are checked by :class:`connector.settings.TenantSettings` when a section is used, so one
bad section does not stop the others from connecting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigurationError
from .settings import FIELDS_BY_NAME, SECRET_FIELDS, resolve_key

SECTION = "MicrosoftDefender"
#: Largest msticpyconfig.yaml read, in bytes (MSTICPy's own full test config is ~10 KB).
MAX_CONFIG_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists accepted (MSTICPy's files nest 5 deep).
MAX_CONFIG_DEPTH = 50
#: Most values (keys, scalars, lists, mappings) in one file: PyYAML's pure-Python reader needs ~20 us
#: each, so this bounds the time a hostile file costs (MSTICPy's full test config holds ~600).
MAX_CONFIG_NODES = 20_000
_VAULT_SUFFIX = {"global": "vault.azure.net", "usgov": "vault.usgovcloudapi.net", "cn": "vault.azure.cn"}
# Args MSTICPy knows that this connector does not use; tolerated so one file serves both tools.
_IGNORED_ARGS = {"location", "apiversion", "tokencachepath", "authtype"}


@dataclass(frozen=True)
class EnvironmentSecret:
    """A secret read from an environment variable (``{EnvironmentVar: NAME}``)."""

    variable: str

    def resolve(self) -> str:
        """The variable's value; ConfigurationError naming the variable if it is unset or empty."""
        value = os.environ.get(self.variable)
        if not value:
            raise ConfigurationError(f"Environment variable {self.variable} (named in msticpyconfig.yaml) is not set.")
        return value


@dataclass(frozen=True)
class KeyVaultSecret:
    """A secret kept in Azure Key Vault (``{KeyVault: ...}``)."""

    vault_url: str
    secret_name: str
    version: str | None = None

    def resolve(self, credential=None, *, ca_bundle: str | None = None) -> str:
        """Fetch the value with azure-identity + azure-keyvault-secrets (see :mod:`connector.keyvault`)."""
        from .keyvault import get_secret

        return get_secret(self.vault_url, self.secret_name, self.version, credential=credential, ca_bundle=ca_bundle)


SecretValue = str | EnvironmentSecret | KeyVaultSecret


@dataclass(frozen=True)
class DefenderInstance:
    """One ``MicrosoftDefender[-Instance]`` section: plain settings plus secret references, unresolved."""

    instance: str | None  # None for the default section
    section: str
    settings: dict = field(default_factory=dict)  # TenantSettings fields, plain values (inline PEM included)
    secrets: dict[str, SecretValue] = field(default_factory=dict, repr=False)  # field -> value or reference

    def __repr__(self) -> str:
        # An inline PEM certificate (with its private key) sits in settings: show only that it is there.
        shown = {k: ("<redacted>" if k in SECRET_FIELDS else v) for k, v in self.settings.items()}
        refs = {k: (type(v).__name__ if not isinstance(v, str) else "<redacted>") for k, v in self.secrets.items()}
        return f"DefenderInstance(instance={self.instance!r}, section={self.section!r}, settings={shown!r}, secrets={refs!r})"

    def resolve(self, keyvault_credential=None, *, ca_bundle: str | None = None) -> dict:
        """Plain settings plus every secret resolved: ready for ``TenantSettings(**...)``.

        ``ca_bundle`` (else the section's own) is trusted for Key Vault too: private endpoints.
        """
        values = dict(self.settings)
        for name, secret in self.secrets.items():
            if isinstance(secret, KeyVaultSecret):
                values[name] = secret.resolve(keyvault_credential, ca_bundle=ca_bundle or values.get("ca_bundle"))
            elif isinstance(secret, EnvironmentSecret):
                values[name] = secret.resolve()
            else:
                values[name] = secret
        values.setdefault("name", self.instance or "default")
        return values


@dataclass(frozen=True)
class MsticpyConfig:
    """The Defender part of one msticpyconfig.yaml."""

    path: Path
    instances: dict[str | None, DefenderInstance]

    def instance(self, name: str | None = None) -> DefenderInstance:
        """The default section (``name`` None or "default") or ``MicrosoftDefender-<name>``, case-insensitive."""
        if name is None or name.lower() == "default":
            if None in self.instances:
                return self.instances[None]
            found = self._names()
            raise ConfigurationError(
                f"No {SECTION} section in {self.path}"
                + (f"; instances found: {found}. Pass instance=<name>." if found else ".")
            )
        for key, inst in self.instances.items():
            if key is not None and key.lower() == name.lower():
                return inst
        found = self._names() or "none"
        raise ConfigurationError(f"Unknown instance {name!r} in {self.path}. Instances found: {found}.")

    def _names(self) -> str:
        return ", ".join("default" if k is None else k for k in self.instances)


def config_candidates(path: str | os.PathLike | None = None) -> list[Path]:
    """Where msticpyconfig.yaml is looked for, in order (MSTICPy's order)."""
    if path:
        return [Path(path)]
    candidates = []
    if os.environ.get("MSTICPYCONFIG"):
        candidates.append(Path(os.environ["MSTICPYCONFIG"]).expanduser())
    candidates.append(Path.cwd() / "msticpyconfig.yaml")
    try:
        candidates.append(Path.home() / ".msticpy" / "msticpyconfig.yaml")
    except RuntimeError:  # no home directory (a service account without one)
        pass
    return candidates


def find_config(path: str | os.PathLike | None = None) -> Path:
    """Locate msticpyconfig.yaml: ``path``, else ``$MSTICPYCONFIG``, else ``./msticpyconfig.yaml``,
    else ``~/.msticpy/msticpyconfig.yaml``."""
    candidates = config_candidates(path)
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a path too long or with a NUL is no file
            continue
    looked = ", ".join(str(c)[:300] for c in candidates)
    raise ConfigurationError(
        f"msticpyconfig.yaml not found (looked at: {looked}). Set MSTICPYCONFIG to its path, or pass "
        "tenant_id/client_id/client_secret, or a connection string."
    )


class _Refused(Exception):
    """A construct the reader does not accept; carries the message and the node's line."""

    def __init__(self, message: str, mark) -> None:
        super().__init__(message)
        self.message = message
        self.line = mark.line + 1 if mark is not None else None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with limits: nesting depth, no aliases to collections, no duplicate keys.

    The pure-Python loader, on purpose: the C loader composes the whole tree (aliases expanded)
    before anything here could look at it.
    """

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._nodes += 1
        if self._nodes > MAX_CONFIG_NODES:
            raise _Refused(f"it holds more than {MAX_CONFIG_NODES:,} values", self.peek_event().start_mark)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, yaml.ScalarNode):
                raise _Refused(
                    "an alias (*name) repeats a whole mapping or list; aliases are accepted only for single values",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _Refused(f"it nests deeper than {MAX_CONFIG_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen and key_node.tag != "tag:yaml.org,2002:merge":
                    raise _Refused("a key appears twice in the same mapping", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_yaml(file: Path) -> object:
    """The YAML document in ``file``, read within the limits above; ConfigurationError otherwise."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {file}: {exc.strerror or type(exc).__name__}.") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigurationError(
            f"{file} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a msticpyconfig.yaml this connector will read."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{file} is not UTF-8 text (byte {exc.start}).") from None
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        where = f" at line {exc.line}" if exc.line else ""
        raise ConfigurationError(f"{file} is refused{where}: {exc.message}.") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{file} is not valid YAML{where}: {exc.problem}.") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # yaml raises ValueError/TypeError/OverflowError for some impossible scalars (dates, big ints).
        raise ConfigurationError(f"{file} is not valid YAML ({type(exc).__name__}).") from None
    finally:
        loader.dispose()


def read_config(path: str | os.PathLike | None = None) -> MsticpyConfig:
    """Read and validate the Defender sections of msticpyconfig.yaml (secrets are not resolved)."""
    file = find_config(path)
    data = load_yaml(file)
    if not isinstance(data, dict):
        raise ConfigurationError(f"{file} does not hold a YAML mapping of settings.")
    providers = data.get("DataProviders") or {}
    if not isinstance(providers, dict):
        raise ConfigurationError(f"DataProviders in {file} is not a mapping.")
    keyvault = data.get("KeyVault") or {}
    instances: dict[str | None, DefenderInstance] = {}
    for section, body in providers.items():
        instance = _instance_name(str(section))
        if instance is False:
            continue
        instances[instance] = _read_section(file, str(section), instance, body, keyvault)
    return MsticpyConfig(path=file, instances=instances)


def _instance_name(section: str) -> str | None | bool:
    if section == SECTION:
        return None
    if section.startswith(SECTION + "-") and len(section) > len(SECTION) + 1:
        return section[len(SECTION) + 1:]
    return False


def _read_section(file: Path, section: str, instance, body, keyvault: dict) -> DefenderInstance:
    args = (body or {}).get("Args") if isinstance(body, dict) else None
    if not isinstance(args, dict):
        raise ConfigurationError(f"DataProviders.{section} in {file} has no Args mapping (TenantId, ClientId, ClientSecret).")
    where = f"DataProviders.{section}.Args of {file}"
    settings: dict = {}
    secrets: dict[str, SecretValue] = {}
    spelt: dict[str, str] = {}
    for key, value in args.items():
        if isinstance(key, str) and key.strip().lower().replace("_", "") in _IGNORED_ARGS:
            continue
        name = resolve_key(key, where, text=True)
        if name in spelt:
            raise ConfigurationError(
                f"{where} sets {name} twice (as {spelt[name]} and as {key}); keep one of them."
            )
        spelt[name] = str(key)
        path = f"DataProviders.{section}.Args.{key}"
        if isinstance(value, dict):
            secrets[name] = _secret_reference(file, path, value, keyvault)
        elif name in ("client_secret", "certificate_passphrase"):
            secrets[name] = _text(value, name, where)
        elif name in ("certificate", "private_key"):
            settings[name] = _read_pem(file, path, _text(value, name, where))
        elif value is not None:
            settings[name] = _scalar(value, name, where)
    return DefenderInstance(instance=instance, section=section, settings=settings, secrets=secrets)


def _scalar(value, name: str, where: str):
    if isinstance(value, list | dict | set):
        raise ConfigurationError(f"{name} in {where} must be a single value, not a list or mapping.")
    kind = FIELDS_BY_NAME[name].kind
    if kind == "number" or (kind == "path" and isinstance(value, bool)):
        return value  # a number stays a number; `verify: false` stays false (and is refused with advice)
    return _text(value, name, where)


def _text(value, name: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict | set | bytes):
        raise ConfigurationError(f"{name} in {where} must be text.")
    return str(value)


def _read_pem(file: Path, path: str, text: str) -> str:
    # MSTICPy takes file paths here; keep the path (TenantSettings reads it) but make it relative to the config file.
    if "-----BEGIN" in text or not text.strip():
        return text
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = file.parent / candidate
    return str(candidate)


def _secret_reference(file: Path, path: str, value: dict, keyvault: dict) -> SecretValue:
    keys = {str(k).lower(): v for k, v in value.items()}
    if "environmentvar" in keys:
        variable = keys["environmentvar"]
        if not variable:
            raise ConfigurationError(f"{path} in {file}: EnvironmentVar needs a variable name.")
        return EnvironmentSecret(str(variable))
    if "keyvault" in keys:
        return _keyvault_reference(file, path, keys["keyvault"], keyvault)
    raise ConfigurationError(f"{path} in {file}: expected a string, {{EnvironmentVar: NAME}} or {{KeyVault: ...}}.")


def _keyvault_reference(file: Path, path: str, ref, keyvault: dict) -> KeyVaultSecret:
    ref = "" if ref is None else str(ref).strip()
    vault_name = None
    if "/" in ref and not ref.startswith("https://"):
        vault_name, secret_name = ref.split("/", 1)
    else:
        secret_name = ref if ref and ref.lower() != "default" else re.sub(r"[^A-Za-z0-9]", "-", path)
    if vault_name is None:
        vault_name = (keyvault or {}).get("VaultName") if isinstance(keyvault, dict) else None
        if not vault_name:
            raise ConfigurationError(
                f"{path} in {file} refers to Key Vault, but the file has no KeyVault.VaultName and the reference "
                "does not name a vault ('vault/secret')."
            )
    authority = str((keyvault or {}).get("Authority") or "global").lower() if isinstance(keyvault, dict) else "global"
    return KeyVaultSecret(vault_url=vault_url(str(vault_name), authority), secret_name=secret_name)


def vault_url(vault_name: str, authority: str = "global") -> str:
    """``https://<name>.vault.azure.net`` (or the sovereign suffix); a full URL is returned as is."""
    if vault_name.startswith("https://"):
        return vault_name.rstrip("/")
    suffix = _VAULT_SUFFIX.get(authority, _VAULT_SUFFIX["global"])
    return f"https://{vault_name}.{suffix}"
