"""Read one secret from Azure Key Vault with azure-identity and azure-keyvault-secrets.

Errors name the vault and the secret, never a value. The default credential is azure-identity's
``DefaultAzureCredential`` (environment, workload identity, managed identity, Azure CLI...); pass
any ``TokenCredential`` to choose another.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import AuthenticationError, ConfigurationError, DefenderError, PermissionDeniedError, ServiceError


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def get_secret(
    vault_url: str,
    secret_name: str,
    version: str | None = None,
    *,
    credential=None,
    ca_bundle: str | None = None,
    verify_challenge_resource: bool | None = None,
) -> str:
    """The current (or given) version of a Key Vault secret's value.

    ``verify_challenge_resource=False`` lets a vault that is not on a Key Vault domain (a proxy, the
    emulator) name the token resource; callers should decide it from an explicit opt-in. ``None``
    (the default) keeps the old rule: off for a loopback vault only.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.keyvault.secrets import SecretClient

    what = f"Key Vault secret {secret_name!r} in vault {vault_url}"
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    options = {"connection_verify": ca_bundle} if ca_bundle else {}
    # A vault served from loopback (the emulator, a local proxy) cannot answer a challenge for the
    # vault.azure.net resource from a matching domain; everywhere else the check stays on.
    if verify_challenge_resource is None:
        verify_challenge_resource = not _is_loopback(vault_url)
    client = SecretClient(vault_url, credential, verify_challenge_resource=verify_challenge_resource, **options)
    try:
        with client:
            secret = client.get_secret(secret_name, version)
    except ResourceNotFoundError:
        raise ConfigurationError(f"{what} was not found. Check the secret name and that it is enabled.") from None
    except HttpResponseError as exc:
        # azure-core raises ClientAuthenticationError (a subclass) for sign-in failures and 401s.
        if exc.status_code == 403:
            raise PermissionDeniedError(
                f"Access to {what} was denied: the identity needs the 'get' secret permission "
                "(or the Key Vault Secrets User role).",
                status=403,
            ) from None
        if isinstance(exc, ClientAuthenticationError):
            raise AuthenticationError(f"Could not authenticate to read {what}: {_first_line(exc)}") from None
        raise ServiceError(f"Key Vault answered HTTP {exc.status_code} reading {what}.", status=exc.status_code) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ServiceError(f"Key Vault is unreachable reading {what}: {_first_line(exc)}") from None
    except DefenderError:
        raise
    except Exception as exc:  # a credential that is not available raises its own types
        raise AuthenticationError(f"Could not get a credential to read {what}: {_first_line(exc)}") from None
    if secret.value is None:
        raise ConfigurationError(f"{what} has no value.")
    return secret.value


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
