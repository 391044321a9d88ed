"""Customer accounts, login, sessions and MFA: the identity service (ADR 0019)."""
