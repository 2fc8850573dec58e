"""Read Defender settings from MSTICPy's ``msticpyconfig.yaml``.

Sections ``DataProviders.MicrosoftDefender`` (the default instance) and
``DataProviders.MicrosoftDefender-<Instance>``; under ``Args``: ``TenantId``, ``ClientId``,
``ClientSecret`` and optionally ``Cloud``, ``ApiType``, ``Certificate``/``PrivateKey``,
``apiRoot``. Keys are case-insensitive (unlike MSTICPy, which ignores ``Cloud`` spelt that way).
A secret value is a string, ``{EnvironmentVar: NAME}`` or ``{KeyVault: ...}``; Key Vault references
use the file's ``KeyVault`` section (``VaultName``, ``Authority``) and MSTICPy's default secret name
(the setting's path with non-alphanumerics as ``-``). ``VaultName`` may also be a full vault URL.

The file is found from an explicit path, else ``$MSTICPYCONFIG``, else ``./msticpyconfig.yaml``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigurationError
from .settings import canonical_key

SECTION = "MicrosoftDefender"
_VAULT_SUFFIX = {"global": "vault.azure.net", "usgov": "vault.usgovcloudapi.net", "cn": "vault.azure.cn"}
# Args MSTICPy knows that this connector does not use; tolerated so one file serves both tools.
_IGNORED_ARGS = {"username", "location", "apiversion", "tokencachepath", "authtype"}


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
    settings: dict = field(default_factory=dict)  # TenantSettings fields with plain values
    secrets: dict[str, SecretValue] = field(default_factory=dict, repr=False)  # field -> value or reference

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


def find_config(path: str | os.PathLike | None = None) -> Path:
    """Locate msticpyconfig.yaml: ``path``, else ``$MSTICPYCONFIG``, else ``./msticpyconfig.yaml``."""
    candidates = [Path(path)] if path else []
    if not path and os.environ.get("MSTICPYCONFIG"):
        candidates.append(Path(os.environ["MSTICPYCONFIG"]))
    if not path:
        candidates.append(Path.cwd() / "msticpyconfig.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigurationError(
        f"msticpyconfig.yaml not found (looked at: {looked}). Set MSTICPYCONFIG to its path, or pass "
        "tenant_id/client_id/client_secret, or a connection string."
    )


def read_config(path: str | os.PathLike | None = None) -> MsticpyConfig:
    """Read and validate the Defender sections of msticpyconfig.yaml (secrets are not resolved)."""
    file = find_config(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{file} is not valid YAML{where}: {exc.problem}.") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"Cannot read {file}: {exc}") from None
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
    settings: dict = {}
    secrets: dict[str, SecretValue] = {}
    for key, value in args.items():
        name = canonical_key(str(key))
        if name is None:
            if str(key).lower() in _IGNORED_ARGS:
                continue
            raise ConfigurationError(f"Unknown key {key!r} in DataProviders.{section}.Args of {file}.")
        path = f"DataProviders.{section}.Args.{key}"
        if isinstance(value, dict):
            secrets[name] = _secret_reference(file, path, value, keyvault)
        elif name in ("client_secret", "certificate_passphrase"):
            secrets[name] = "" if value is None else str(value)
        elif name in ("certificate", "private_key"):
            settings[name] = _read_pem(file, path, value)
        elif value is not None:
            settings[name] = value if name == "timeout" else str(value)
    return DefenderInstance(instance=instance, section=section, settings=settings, secrets=secrets)


def _read_pem(file: Path, path: str, value) -> str:
    # MSTICPy takes file paths here; keep the path (TenantSettings reads it) but make it relative to the config file.
    text = str(value)
    if "-----BEGIN" in text:
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
