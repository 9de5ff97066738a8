"""What ecgtl prints or logs of text it did not write itself.

- Credentials never leave ecgtl: every parameter, tag, error message and logged text that could hold a URL
  passes through `redact`, which masks the password of `scheme://user:password@host` (storage URLs of Optuna
  and MLflow: PostgreSQL, MySQL, ...).
- Terminal control never reaches the user's terminal: names and descriptions read from a store (registered
  models, aliases, model cards) and error lines pass through `printable`, which writes control characters
  (ESC sequences, bells, C1 controls, bidirectional overrides) as visible escapes.
"""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@")
# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def redact(text: str) -> str:
    """`postgresql+psycopg2://user:secret@host/db` -> `postgresql+psycopg2://user:***@host/db`, anywhere in text."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def printable(text: str, *, lines: bool = True) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`), so that a name or
    description cannot move the cursor, recolour, retitle or clear the terminal, or reorder what is shown;
    tabs stay, and line breaks too unless `lines=False` (a name shown on one line)."""
    escaped = _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if lines else escaped.replace("\n", "\\n").replace("\r", "\\r")
