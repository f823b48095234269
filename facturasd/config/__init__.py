"""The configuration: facturasd.toml and the environment, validated into `Config`.

    types     the values: durations, rate limits, paths, secret files, masked URLs
    sections  the pydantic sections, `Config`, and `INERT` (keys with no effect yet)
    loading   find_config_file, load_config (file, seed names, FACTURASD_ variables)
    wording   the lines a person reads about a problem or an inert key
    folders   check-config's look at the folders and secret files

The company profile is the checks' model (facturasd.checks.company), listed here under
`[[companies]]`; the configuration imports the checks, never the other way round.
"""

from facturasd.checks.company import Company, ConceptRule
from facturasd.config.folders import FolderReport, check_folders
from facturasd.config.loading import find_config_file, inert_warnings, load_config
from facturasd.config.sections import (
    INERT,
    Alegra,
    Alerts,
    Authorities,
    Cache,
    Checks,
    Config,
    Daemon,
    Formats,
    Http,
    Inbox,
    Notify,
    Paths,
    QueueSettings,
    Reports,
    Retry,
    Schedule,
    Workers,
    effective,
    flatten,
    inert_keys,
)
from facturasd.config.types import (
    Duration,
    RateLimit,
    format_duration,
    mask_url,
    parse_duration,
)

__all__ = [
    "INERT",
    "Alegra",
    "Alerts",
    "Authorities",
    "Cache",
    "Checks",
    "Company",
    "ConceptRule",
    "Config",
    "Daemon",
    "Duration",
    "FolderReport",
    "Formats",
    "Http",
    "Inbox",
    "Notify",
    "Paths",
    "QueueSettings",
    "RateLimit",
    "Reports",
    "Retry",
    "Schedule",
    "Workers",
    "check_folders",
    "effective",
    "find_config_file",
    "flatten",
    "format_duration",
    "inert_keys",
    "inert_warnings",
    "load_config",
    "mask_url",
    "parse_duration",
]
