"""What a person reads about their configuration: one line per problem naming the key (and
the variable it came from), the value and why; a "did you mean" for a misspelt key. No line
ever shows a secret.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from facturasd.config.sections import Config, section_model
from facturasd.config.types import mask_url
from facturasd.constants import QueueName

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "int_type": "is not a whole number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not text",
    "list_type": "is not a list",
    "model_type": "is not a section",
    "dict_type": "is not a section",
    "model_attributes_type": "is not a section",
}

_BOUNDS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} item(s)",
}

# The kind loading gives a [queues.<name>] section whose name is no queue.
UNKNOWN_QUEUE = "unknown_queue"


# The problems of the configuration as a whole (Config's own validators): their message names
# the keys.
WHOLE = frozenset({"unique", "unknown_company", "report_mail"})


def problem(error: ErrorDetails, loc: tuple[int | str, ...], kind: str, origin: str | None) -> str:
    """The line for one validation error at `loc`; `origin` is the variable that set it."""
    where = format_loc(loc) + (f" (from {origin})" if origin else "")
    if kind == "extra_forbidden":
        return f"{where}: unknown key{_suggestion(loc)}"
    if kind == UNKNOWN_QUEUE:
        return f"{where}: unknown queue; the queues are {', '.join(q.value for q in QueueName)}"
    if kind == "missing":
        return f"{where}: is required"
    if kind in WHOLE:
        return error["msg"]
    why = _MESSAGES.get(kind) or _lower_first(error["msg"])
    ctx = error.get("ctx", {})
    if kind == "literal_error":
        why = f"is not one of {ctx.get('expected', '')}"
    elif kind in _BOUNDS:
        why = _BOUNDS[kind].format(**ctx)
    value = json.dumps(_masked(error["input"]), default=str, ensure_ascii=False)
    return f"{where}: {value} {why}"


def toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    # Python 3.11's TOMLDecodeError carries the position only in its message.
    if match := re.search(r"\(at line (\d+), column (\d+)\)$", message):
        line, column = match.groups()
        reason = message[: match.start()].strip()
        return (
            f"{path}:{line}:{column}: TOML syntax error at line {line}, column {column}: {reason}"
        )
    return f"{path}: TOML syntax error: {message}"


def format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _masked(value: object) -> object:
    """A value fit for an error line: anything holding a URL loses its credentials."""
    if isinstance(value, str) and "://" in value:
        return mask_url(value, secret_path=True)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _suggestion(loc: tuple[int | str, ...]) -> str:
    """A "did you mean" for a misspelt key, from the keys its section accepts."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str) and part in model.model_fields:
            model = section_model(model.model_fields[part].annotation)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""
