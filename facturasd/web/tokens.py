"""The HTTP API's tokens: `http.token_file` holds one `name:token` per line, so each person or
system that acts through the API has its own, and the audit trail names who acted.

Blank lines and lines starting with # are skipped. A line that is not `name:token` is a
configuration problem naming the file's line, never its content (it may be a token).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from facturasd.errors import ConfigError

KEY = "http.token_file"
# A name as the audit trail shows it: no spaces, no colon (the separator).
NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")


@dataclass(frozen=True)
class Tokens:
    """The tokens by name; empty: no one may act through the API."""

    by_name: dict[str, bytes] = field(default_factory=dict)

    def name_of(self, presented: str) -> str | None:
        """The name whose token `presented` is, or None. Every token is compared, each in
        constant time, so the answer's timing tells nothing about any of them."""
        try:
            given = presented.encode()
        except UnicodeError:  # (a header of bytes no token has)
            return None
        found = None
        for name, token in self.by_name.items():
            if hmac.compare_digest(given, token):
                found = name
        return found


def parse(text: str, where: str = KEY) -> Tokens:
    """The tokens of a token file's text; ConfigError listing every malformed line."""
    by_name: dict[str, bytes] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not colon or not NAME.fullmatch(name) or not token or any(c.isspace() for c in token):
            problems.append(
                f"{where}: line {number} is not name:token (a name of letters, digits and "
                "._@+-, a colon, a token without spaces)"
            )
        elif name in by_name:
            problems.append(f"{where}: line {number}: the name {name!r} is given twice")
        elif token.encode() in by_name.values():
            # Two names with one token: the audit trail could not tell who acted.
            problems.append(f"{where}: line {number}: its token is another name's too")
        else:
            by_name[name] = token.encode()
    if problems:
        raise ConfigError(problems)
    return Tokens(by_name)


def read(path: Path | None) -> Tokens:
    """`http.token_file`'s tokens (none when it is not set). Blocking: run it in a thread."""
    if path is None:
        return Tokens()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{KEY}: cannot read {path}: {why}"]) from None
    return parse(text, f"{KEY} ({path})")
