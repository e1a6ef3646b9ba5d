"""Who is asking, and may they: Bearer tokens on the API, roles `viewer` and `operator`.

Tokens come from HERALD_API_TOKENS (herald.config.parse_api_tokens). A presented token
is compared with every configured one in constant time (digests of equal length, no
early exit), so the answer's timing says nothing about how close a guess was. Tokens
are never logged and never put in a page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from herald.config import ApiToken
from herald.web.problems import Problem

VIEWER, OPERATOR = "viewer", "operator"
#: What each role may do, in order: an operator may do everything a viewer may.
RANK = {VIEWER: 1, OPERATOR: 2}


@dataclass(frozen=True)
class Principal:
    """The caller: a role, and how they proved it (token, session, or no auth at all)."""

    role: str
    via: str
    #: A stable, non-secret name for the token that signed in (sessions check it still
    #: exists, so removing a token from the configuration ends its sessions).
    fingerprint: str = ""

    @property
    def can_operate(self) -> bool:
        return RANK[self.role] >= RANK[OPERATOR]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Checks tokens against the configured ones; `insecure` lets everyone in as operator."""

    def __init__(self, tokens: Sequence[ApiToken], *, insecure: bool = False) -> None:
        self._tokens = [(t.role, _digest(t.token)) for t in tokens]
        self.insecure = insecure
        #: The key that signs sessions (herald/web/sessions.py): derived from the tokens, so
        #: every replica agrees and rotating the tokens ends every session.
        # With no tokens (--insecure-no-auth) a key of this process only.
        material = b"".join(sorted(digest for _role, digest in self._tokens))
        self.session_key = (
            hashlib.sha256(b"herald-session-v1|" + material).digest()
            if self._tokens
            else secrets.token_bytes(32)
        )

    def fingerprint(self, digest: bytes) -> str:
        return hmac.new(self.session_key, digest, hashlib.sha256).hexdigest()[:24]

    def role_for(self, token: str) -> Principal | None:
        """The role of `token`, or None; every configured token is compared, always."""
        presented = _digest(token)
        found: str | None = None
        fingerprint = ""
        for role, digest in self._tokens:
            if hmac.compare_digest(presented, digest):
                found, fingerprint = role, self.fingerprint(digest)
        return Principal(found, "token", fingerprint) if found else None

    def knows(self, role: str, fingerprint: str) -> bool:
        """Is a session's token still configured, with that role?"""
        ok = False
        for known_role, digest in self._tokens:
            same = hmac.compare_digest(self.fingerprint(digest), fingerprint)
            ok |= same and known_role == role
        return ok

    def from_header(self, request: Request) -> Principal:
        """The API's caller, from `Authorization: Bearer TOKEN`; 401 when missing or wrong."""
        if self.insecure:
            return Principal(OPERATOR, "insecure")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "send Authorization: Bearer TOKEN (a token from HERALD_API_TOKENS)",
                headers={"WWW-Authenticate": 'Bearer realm="herald"'},
            )
        principal = self.role_for(token.strip())
        if principal is None:
            raise Problem(
                401,
                "the token is not one of HERALD_API_TOKENS",
                headers={"WWW-Authenticate": 'Bearer realm="herald", error="invalid_token"'},
            )
        return principal


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def viewer(request: Request) -> Principal:
    """Dependency: any valid token."""
    return authenticator(request).from_header(request)


def operator(request: Request) -> Principal:
    """Dependency: an operator's token; a viewer's gets 403."""
    principal = authenticator(request).from_header(request)
    if not principal.can_operate:
        raise Problem(403, "this token's role is viewer: retry, cancel and send need operator")
    return principal
