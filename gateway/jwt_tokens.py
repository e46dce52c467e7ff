"""JWT bearer tokens from an identity provider, verified with PyJWT (on when ``jwt_issuer`` is
set): the signature by the PEM public key (``jwt_public_key_file``) or by the key of the JWKS
file (``jwt_jwks_file``) that the token's ``kid`` names; the issuer; the audience when one is
set; ``exp`` (required: a token that never expires is refused) and ``nbf``.

Only asymmetric algorithms are accepted: the gateway holds public keys only, and refusing HS*
closes the classic confusion where a public key is used as an HMAC secret. Key files are read
once, at start; a file that cannot be used stops the start with a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sparkgate.jobs.errors import ConfigError, Unauthenticated
from sparkgate.jobs.keys import RANK
from sparkgate.jobs.settings import Settings

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA")
#: Clocks of the identity provider and the gateway may differ by this much.
LEEWAY_S = 30


@dataclass(frozen=True)
class Claims:
    subject: str
    # Every sparkgate role the token lists (unknown names are left out).
    roles: tuple[str, ...]


@dataclass(frozen=True)
class JwtVerifier:
    issuer: str
    audience: str | None
    public_key: Any | None
    jwks: jwt.PyJWKSet | None
    roles_claim: str
    subject_claim: str

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        if not settings.jwt_issuer:
            return None
        if settings.jwt_public_key_file is None and settings.jwt_jwks_file is None:
            raise ConfigError("setting jwt_issuer: expected jwt_public_key_file or "
                              "jwt_jwks_file to be set too (the keys tokens are signed with), "
                              "got neither")
        return cls(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience or None,
            public_key=_read_pem(settings.jwt_public_key_file),
            jwks=_read_jwks(settings.jwt_jwks_file),
            roles_claim=settings.jwt_roles_claim, subject_claim=settings.jwt_subject_claim,
        )

    def verify(self, token: str) -> Claims:
        """The token's subject and roles, or Unauthenticated saying what is wrong with it."""
        try:
            payload = jwt.decode(
                token, self._key_for(token), algorithms=list(ALGORITHMS),
                issuer=self.issuer, audience=self.audience, leeway=LEEWAY_S,
                options={"require": ["exp", "iss"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _refused("it has expired (exp)") from None
        except jwt.ImmatureSignatureError:
            raise _refused("it is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise _refused(f"its issuer (iss) is not {self.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise _refused(f"its audience (aud) does not include {self.audience!r}") from None
        except jwt.InvalidSignatureError:
            raise _refused("its signature does not match the configured key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refused(f"it has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _refused(str(exc) or type(exc).__name__) from None
        subject = claim(payload, self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _refused(f"it has no {self.subject_claim!r} claim naming who it is for")
        return Claims(subject, roles_of(claim(payload, self.roles_claim)))

    def _key_for(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise _refused(f"it is not a JWT ({exc})") from None
        if self.jwks is not None:
            if kid is not None:
                for key in self.jwks.keys:
                    if key.key_id == kid:
                        return key
            elif len(self.jwks.keys) == 1 and self.public_key is None:
                return self.jwks.keys[0]
        if self.public_key is not None:
            return self.public_key
        raise _refused(f"its key id (kid) {kid!r} is not in the JWKS file")


def claim(payload: Mapping[str, Any], name: str) -> Any:
    """The claim ``name``; else, for a dotted name, the nested one (``realm_access.roles``).
    Exact names come first: namespaced claims are URLs, dots included."""
    if name in payload:
        return payload[name]
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_of(value: Any) -> tuple[str, ...]:
    """Roles from a list of names or a space- or comma-separated string."""
    if isinstance(value, str):
        names = value.replace(",", " ").split()
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    return tuple(sorted({n for n in names if n in RANK}, key=RANK.__getitem__))


def _refused(reason: str) -> Unauthenticated:
    return Unauthenticated(f"bearer token refused: {reason}", {"reason": reason})


def _read_pem(path: Path | None) -> Any | None:
    if path is None:
        return None
    try:
        return load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"setting jwt_public_key_file: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"setting jwt_public_key_file: expected a PEM public key in {path}, "
                          f"got something else ({exc})") from None


def _read_jwks(path: Path | None) -> jwt.PyJWKSet | None:
    if path is None:
        return None
    try:
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ConfigError(f"setting jwt_jwks_file: cannot read {path}: {exc}") from None
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigError(f"setting jwt_jwks_file: expected a JWKS document "
                          f'({{"keys": [...]}}) in {path}, got something else ({exc})') from None
