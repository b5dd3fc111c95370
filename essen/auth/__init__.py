"""Admin authentication: argon2 passwords, HS256 tokens, login throttling, accounts.

Errors are in :mod:`essen.errors` (``AuthError`` and its subclasses, each with a
``reason`` word safe to show a client).
"""

from __future__ import annotations

from essen.auth.passwords import (
    DEFAULT_PASSWORDS,
    MAX_PASSWORD_LENGTH,
    Passwords,
    Verification,
    hash_password,
    verify_password,
)
from essen.auth.rate_limit import (
    ACCOUNT_LIMIT,
    ADDRESS_LIMIT,
    LimiterStatistics,
    LimitPolicy,
    LoginLimiter,
)
from essen.auth.tokens import (
    ALGORITHM,
    MIN_SECRET_BYTES,
    Claims,
    IssuedToken,
    TokenSettings,
    issue_token,
    verify_token,
)
from essen.auth.users import (
    USERNAME_PATTERN,
    AdminDirectory,
    authenticate,
    ensure_admin,
    valid_username,
)

__all__ = (
    "ACCOUNT_LIMIT",
    "ADDRESS_LIMIT",
    "ALGORITHM",
    "DEFAULT_PASSWORDS",
    "MAX_PASSWORD_LENGTH",
    "MIN_SECRET_BYTES",
    "USERNAME_PATTERN",
    "AdminDirectory",
    "Claims",
    "IssuedToken",
    "LimitPolicy",
    "LimiterStatistics",
    "LoginLimiter",
    "Passwords",
    "TokenSettings",
    "Verification",
    "authenticate",
    "ensure_admin",
    "hash_password",
    "issue_token",
    "valid_username",
    "verify_password",
    "verify_token",
)
