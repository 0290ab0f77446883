"""The simulated Entra ID login authority: OpenID discovery, the client-credentials token
endpoint (secret or certificate assertion), and the access tokens Graph then verifies.
Answers are (status, JSON body) pairs; HTTP lives in microsoft.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from simulator.microsoft.azure import ARM_RESOURCES
from simulator.microsoft.graph_data import SimTenant
from simulator.microsoft.graph_odata import Caller, GraphError
from simulator.microsoft.hosts import HOST_ROLES

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's appId, every cloud
GRAPH_RESOURCES = ("https://graph.microsoft.com", GRAPH_APP_ID)
# Every real resource a client-credentials scope may name: each national cloud's Graph and
# Resource Manager, and Partner Center (simulator/microsoft/hosts.py).
_REAL_RESOURCES = tuple(
    f"https://{host}" for host, role in HOST_ROLES.items() if role != "authority"
)
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_DEFAULT_APP_ROLE = "0997a1d0-0d1d-4acb-b408-d5ca73121e90"  # every app's implicit directory role
_SKEW = 300  # seconds of clock skew Entra tolerates on assertions

Answer = tuple[int, dict[str, Any]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signed bytes, signature; ValueError when not a well-formed JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("IDX14100: JWT is not well formed, there are no dots (.).")
    try:
        header = json.loads(unb64url(parts[0]))
        claims = json.loads(unb64url(parts[1]))
        signature = unb64url(parts[2])
    except (ValueError, binascii.Error):
        raise ValueError("IDX14102: Unable to decode the JWT.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("IDX14102: Unable to decode the JWT.")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def aad_error(status: int, error: str, code: int, description: str) -> Answer:
    """Entra's OAuth error body: AADSTS code, trace and correlation ids, timestamp."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: "
        f"{correlation} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


def _unauthorized(message: str, code: str = "InvalidAuthenticationToken") -> GraphError:
    return GraphError(401, code, message)


class Authority:
    """Issues and verifies HS256 access tokens with a key only this simulator knows."""

    def __init__(
        self, base_url: Callable[[], str], find_tenant: Callable[[str], SimTenant | None]
    ) -> None:
        self._base = base_url
        self._find = find_tenant
        self._key = secrets.token_bytes(32)
        self._seq = 0
        self._first_valid_seq = 0
        self.token_lifetime = 3599.0

    # -- discovery -----------------------------------------------------------------------------

    def _tenant_not_found(self, key: str) -> Answer:
        return aad_error(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{key}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud. Check with your subscription administrator, this may "
            "happen if there are no active subscriptions for the tenant.",
        )

    def _live_tenant(self, key: str) -> SimTenant | None:
        tenant = self._find(key)
        return None if tenant is None or tenant.deleted else tenant

    def openid_configuration(self, key: str, base: str | None = None) -> Answer:
        """The discovery document; its endpoints are on `base`, the host it was asked on
        (MSAL takes the token endpoint from here)."""
        tenant = self._live_tenant(key)
        if tenant is None:
            return self._tenant_not_found(key)
        base, tid = base or self._base(), tenant.tenant_id
        host = base.split("://", 1)[1]
        return 200, {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "roles"],
            "kerberos_endpoint": f"{base}/{tid}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": host,
            "cloud_graph_host_name": host,
            "msgraph_host": host,
            "rbac_url": base,
        }

    def keys(self, key: str) -> Answer:
        if self._live_tenant(key) is None:
            return self._tenant_not_found(key)
        return 200, {"keys": []}  # HS256: there is no public key to publish

    # -- token endpoint ------------------------------------------------------------------------

    def token(self, key: str, form: dict[str, str], base: str | None = None) -> Answer:
        tenant = self._live_tenant(key)
        if tenant is None:
            status, body = self._tenant_not_found(key)
            body["error"] = "invalid_request"
            return status, body
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return aad_error(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        if form["grant_type"] != "client_credentials":
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form['grant_type']}'.",
            )
        client_id = form["client_id"]
        app = next((a for a in tenant.applications.values() if a["appId"] == client_id), None)
        # A multi-tenant app is registered in another tenant: here only its service principal.
        foreign = client_id == tenant.client_id and tenant.app_home_tenant_id is not None
        if app is None and not (foreign and tenant.bot_service_principal is not None):
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.name}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            )
        sp = next((s for s in tenant.service_principals.values() if s["appId"] == client_id), None)
        if sp is None:
            return aad_error(
                400,
                "invalid_client",
                7000229,
                f"The client application {client_id} is missing service principal in the tenant "
                f"{tenant.tenant_id}.",
            )
        failure = self._check_credential(
            tenant, key, form, client_id == tenant.client_id, base or self._base()
        )
        if failure is not None:
            return failure
        resource = self._resource(form["scope"])
        if isinstance(resource, tuple):
            return resource
        via_cert = "client_assertion" in form
        token = self._mint(tenant, sp["id"], resource, certificate=via_cert)
        lifetime = int(self.token_lifetime)
        return 200, {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def _check_credential(
        self, tenant: SimTenant, key: str, form: dict[str, str], is_bot: bool, base: str
    ) -> Answer | None:
        if "client_assertion" in form:
            if form.get("client_assertion_type") != _ASSERTION_TYPE:
                return aad_error(
                    400,
                    "invalid_request",
                    50027,
                    "Invalid client_assertion_type: expected " + _ASSERTION_TYPE + ".",
                )
            audiences = {f"{base}/{name}/oauth2/v2.0/token" for name in (key, tenant.tenant_id)}
            problem = verify_assertion(
                form["client_assertion"],
                tenant.client_certificates if is_bot else {},
                audiences,
                form["client_id"],
            )
            if problem is None:
                return None
            return aad_error(401, "invalid_client", 700027, f"Client assertion failed: {problem}")
        if "client_secret" not in form:
            return aad_error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
        if not (is_bot and hmac.compare_digest(form["client_secret"], tenant.client_secret)):
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{form['client_id']}'.",
            )
        return None

    def _resource(self, scope: str) -> str | Answer:
        scopes = [s for s in scope.split() if s not in _RESERVED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scopes[0].removesuffix("/.default")
        known = (
            self._base(),
            *GRAPH_RESOURCES,
            f"{self._base()}/arm",
            *ARM_RESOURCES,
            f"{self._base()}/partnercenter",
            *_REAL_RESOURCES,
        )
        if resource.rstrip("/") not in known:
            return aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant.",
            )
        return resource.rstrip("/")

    def _mint(self, tenant: SimTenant, sp_id: str, resource: str, *, certificate: bool) -> str:
        self._seq += 1
        now = int(time.time())
        wids = sorted(tenant.roles.get(sp_id, set()) | {_DEFAULT_APP_ROLE})
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + int(self.token_lifetime),
            "app_displayname": "close-account-bot",
            "appid": tenant.client_id,
            "appidacr": "2" if certificate else "1",
            "idp": f"https://sts.windows.net/{tenant.tenant_id}/",
            "idtyp": "app",
            "oid": sp_id,
            "sub": sp_id,
            "tid": tenant.tenant_id,
            "uti": b64url(self._seq.to_bytes(8, "big")),
            "ver": "1.0",
            "wids": wids,
        }
        if tenant.app_roles:
            claims["roles"] = sorted(tenant.app_roles)
        header = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    def access_token(self, tenant: SimTenant) -> str:
        """A valid token for the tenant's bot app, without the token endpoint (test helper)."""
        sp = tenant.bot_service_principal
        if sp is None:
            raise ValueError(f"tenant {tenant.name} has no service principal for the bot")
        return self._mint(tenant, sp["id"], self._base(), certificate=False)

    def expire_tokens(self) -> None:
        """Every token issued so far is from now on rejected as expired."""
        self._first_valid_seq = self._seq + 1

    # -- verification on Graph -----------------------------------------------------------------

    def verify(
        self, authorization: str | None, *, audience: str = "graph", base: str | None = None
    ) -> tuple[SimTenant, Caller]:
        """The tenant and caller of a Graph (or ARM, or Partner Center) request, or a 401.

        On a real host (`base`, e.g. https://graph.microsoft.us) only a token for that host
        is accepted: national clouds' tokens "are not interchangeable" (microsoftgraph/
        microsoft-graph-docs-contrib, concepts/deployments.md)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Access token is empty.")
        try:
            header, claims, signed, signature = _split_jwt(token.strip())
        except ValueError as err:
            raise _unauthorized(str(err)) from None
        expected = hmac.new(self._key, signed, hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, signature):
            raise _unauthorized("Access token validation failure. Invalid signature.")
        seq = int.from_bytes(unb64url(str(claims.get("uti", ""))), "big")
        if claims.get("exp", 0) <= time.time() or seq < self._first_valid_seq:
            raise _unauthorized("Lifetime validation failed, the token is expired.")
        audiences = {
            "graph": (self._base(), *GRAPH_RESOURCES),
            "arm": (f"{self._base()}/arm", *ARM_RESOURCES),
            "partnercenter": (f"{self._base()}/partnercenter",),
        }[audience]
        if base is not None and base != self._base():
            audiences = (base, GRAPH_APP_ID) if audience == "graph" else (base,)
        if str(claims.get("aud", "")).rstrip("/") not in audiences:
            raise _unauthorized("Access token validation failure. Invalid audience.")
        tenant = self._find(str(claims.get("tid", "")))
        if tenant is None or tenant.deleted:
            raise _unauthorized("Access token validation failure. Invalid issuer or tenant.")
        sp_id = str(claims.get("oid", ""))
        if sp_id not in tenant.service_principals:
            raise _unauthorized(
                "The identity of the calling application could not be established.",
                "Authorization_IdentityNotFound",
            )
        roles = claims.get("roles", [])
        return tenant, Caller(str(claims["appid"]), sp_id, frozenset(roles))


def verify_assertion(
    assertion: str, certificates: dict[str, bytes], audiences: set[str], client_id: str
) -> str | None:
    """Check a certificate credential (RFC 7523 JWT, PS256 or RS256); the problem, or None."""
    try:
        header, claims, signed, signature = _split_jwt(assertion)
    except ValueError as err:
        return str(err)
    thumbprint = header.get("x5t#S256") or header.get("x5t") or ""
    pem = certificates.get(str(thumbprint).rstrip("="))
    if pem is None:
        return "The certificate used to sign the client assertion is not registered on the app."
    key = x509.load_pem_x509_certificate(pem).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return "Only RSA certificates are supported."
    alg = header.get("alg")
    pad: padding.AsymmetricPadding
    if alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    elif alg == "RS256":
        pad = padding.PKCS1v15()
    else:
        return f"Unsupported signing algorithm {alg!r}."
    try:
        key.verify(signature, signed, pad, hashes.SHA256())
    except InvalidSignature:
        return "The signature does not match the registered certificate."
    now = time.time()
    if claims.get("aud") not in audiences:
        return f"Invalid audience {claims.get('aud')!r}: expected the token endpoint."
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "The iss and sub claims must be the client_id."
    if float(claims.get("exp", 0)) < now - _SKEW or float(claims.get("nbf", 0)) > now + _SKEW:
        return "The assertion is expired or not yet valid."
    return None


def register_certificate(tenant: SimTenant, cert_pem: bytes) -> None:
    """Add a certificate credential to the tenant's bot app (keyCredentials), by thumbprint."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    for algorithm in (hashes.SHA1(), hashes.SHA256()):  # MSAL sends x5t or x5t#S256
        tenant.client_certificates[b64url(cert.fingerprint(algorithm))] = cert_pem
    app = tenant.bot_application
    if app is not None:
        app["keyCredentials"].append(
            {
                "customKeyIdentifier": cert.fingerprint(hashes.SHA1()).hex().upper(),
                "displayName": cert.subject.rfc4514_string(),
                "keyId": str(uuid.uuid4()),
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "startDateTime": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "key": None,
            }
        )
