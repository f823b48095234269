"""The configuration: facturasd.toml and the environment, validated into `Config`.

    types     the values: durations, rate limits, paths, secret files, masked URLs
    sections  the pydantic sections and `Config`
    loading   find_config_file, load_config (file, seed names, FACTURASD_ variables)
    wording   the lines a person reads about a problem
    folders   check-config's look at the folders and secret files

The company profile is the checks' model (facturasd.checks.company), listed here under
`[[companies]]`: the configuration imports the checks, and the checks import nothing from here
when they run (tests/test_imports.py walks the imports).
"""

# The names the rest of facturasd imports from here. `Company` is re-exported for the modules
# that still take it from the configuration; new code imports it from facturasd.checks.company.
from facturasd.checks.company import Company
from facturasd.config.folders import FolderReport, check_folders
from facturasd.config.loading import find_config_file, load_config
from facturasd.config.sections import (
    Checks,
    Config,
    Http,
    Inbox,
    Paths,
    QueueSettings,
    effective,
    flatten,
)
from facturasd.config.types import RateLimit, format_duration, parse_duration

__all__ = [
    "Checks",
    "Company",
    "Config",
    "FolderReport",
    "Http",
    "Inbox",
    "Paths",
    "QueueSettings",
    "RateLimit",
    "check_folders",
    "effective",
    "find_config_file",
    "flatten",
    "format_duration",
    "load_config",
    "parse_duration",
]
