"""Credentials never leave ecgtl: every parameter, tag, error message and logged text that could hold a URL
passes through `redact`, which masks the password of `scheme://user:password@host` (storage URLs of Optuna
and MLflow: PostgreSQL, MySQL, ...)."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@")


def redact(text: str) -> str:
    """`postgresql+psycopg2://user:secret@host/db` -> `postgresql+psycopg2://user:***@host/db`, anywhere in text."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
