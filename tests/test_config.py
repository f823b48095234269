from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facturasd.config import (
    Config,
    RateLimit,
    flatten,
    format_duration,
    load_config,
    parse_duration,
)
from facturasd.errors import ConfigError
from tests.support import (
    PYTHON,
    REPO,
    SHIPPED_CONFIG,
    daemon_env,
    free_port,
    run_facturasd,
)


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "facturasd.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ or {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return caught.value.problems


# ── valid files ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("", "retry.schedule", [60.0, 300.0, 900.0]),
        ('[retry]\nschedule = ["500ms", "2s", "1h"]\n', "retry.schedule", [0.5, 2.0, 3600.0]),
        ("[retry]\ninterval = 90\n", "retry.interval", 90.0),
        ('[checks]\nmax_age = "30d"\n', "checks.max_age", 30 * 86400.0),
        ('[daemon]\nshutdown_timeout = "1.5s"\n', "daemon.shutdown_timeout", 1.5),
        (
            '[queues.alegra_sync]\nrate_limit = "100/h"\n',
            "queues.alegra_sync.rate_limit",
            RateLimit(100, 3600.0),
        ),
        (
            '[queues.alegra_sync]\nrate_limit = "5/s"\n',
            "queues.dian_validation.rate_limit",
            RateLimit(60, 60.0),
        ),
        ('[queues.dian_validation]\nrate_limit = ""\n', "queues.dian_validation.rate_limit", None),
        ('[http]\nbind = "[::1]:9000"\n', "http.port", 9000),
        ('[cache]\nbackend = "redis"\n', "cache.backend", "redis"),
    ],
)
def test_valid_values(tmp_path: Path, text: str, key: str, expected: object) -> None:
    value: object = load(tmp_path, text)
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)  # type: ignore[index]
    assert value == expected


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path: Path) -> None:
    config = load(tmp_path, '[paths]\ninbox = "./in"\narchive = "/srv/archive"\n')
    assert config.paths.inbox == tmp_path / "in"
    assert config.paths.archive == Path("/srv/archive")
    assert config.paths.state_dir == tmp_path / "var/state"  # defaults are resolved too


def test_companies(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[[companies]]\nslug = "acme"\nname = "ACME S.A.S."\ncountry = "CO"\n'
        'tax_id = "900123456"\ntax_level_codes = ["O-13", "O-15"]\nwithholding_agent = true\n',
    )
    assert config.companies[0].tax_level_codes == ["O-13", "O-15"]
    assert config.companies[0].withholding_agent


@given(st.integers(min_value=0, max_value=10**9))
def test_durations_round_trip(millis: int) -> None:
    """What check-config prints reads back as the same duration."""
    seconds = millis / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == pytest.approx(seconds)
    assert re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h|d)", text)


# ── each kind of error, with its exact message ────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[retry]\nschedule = ["1m", "5 minutos"]\n',
            'retry.schedule[1]: "5 minutos" is not a duration like "5m"',
        ),
        ("[paths]\ninbx = 'x'\n", 'paths.inbx: unknown key (did you mean "inbox"?)'),
        ("[reprots]\n", 'reprots: unknown key (did you mean "reports"?)'),
        (
            "[queues.alegra_sync]\nrate_limt = '1/m'\n",
            'queues.alegra_sync.rate_limt: unknown key (did you mean "rate_limit"?)',
        ),
        (
            "[queues.invoices]\n",
            "queues.invoices: unknown queue; the queues are invoice_processing, tax_validation, "
            "dian_validation, compliance_retry, alegra_sync, report_generation, notifications",
        ),
        (
            "[queues.alegra_sync]\nrate_limit = '10 per minute'\n",
            'queues.alegra_sync.rate_limit: "10 per minute" is not a rate like "10/m" '
            "(per s, m, h or d)",
        ),
        (
            "[workers.local]\nconcurrency = 'four'\n",
            'workers.local.concurrency: "four" is not a whole number',
        ),
        ("[workers.local]\nconcurrency = 0\n", "workers.local.concurrency: 0 must be at least 1"),
        ("[retry]\nschedule = []\n", "retry.schedule: [] must have at least 1 item(s)"),
        (
            "[inbox]\nforce_polling = 'yes please'\n",
            'inbox.force_polling: "yes please" is not true or false',
        ),
        (
            "[daemon]\nlog_format = 'xml'\n",
            "daemon.log_format: \"xml\" is not one of 'text' or 'json'",
        ),
        (
            "[daemon]\ntimezone = 'Mars/Olympus'\n",
            'daemon.timezone: "Mars/Olympus" is not an IANA time zone like "America/Bogota"',
        ),
        (
            "[http]\nbind = 'localhost'\n",
            'http.bind: "localhost" is not an address like "127.0.0.1:8080" or "[::1]:8080"',
        ),
        (
            "[schedule]\ndaily_report = '8am'\n",
            'schedule.daily_report: "8am" is not a cron expression of five fields like "0 8 * * *"',
        ),
        (
            "[[companies]]\nslug = 'acme'\nname = 'A'\ncountry = 'CO'\n",
            "companies[0].tax_id: is required",
        ),
        (
            "[[companies]]\nslug = 'acme'\nname = 'A'\ncountry = 'PE'\ntax_id = '1'\n",
            "companies[0].country: \"PE\" is not one of 'CO' or 'MX'",
        ),
        (
            "[[companies]]\nslug='a'\nname='A'\ncountry='CO'\ntax_id='1'\n"
            "[[companies]]\nslug='a'\nname='B'\ncountry='CO'\ntax_id='2'\n",
            "companies: slug a appears more than once",
        ),
        (
            "[reports]\nemail = true\n",
            "reports.email = true mails the daily report by [notify.email]: enable it "
            "(notify.email.enabled = true, with its host and recipients)",
        ),
        (
            "[notify.log]\nmin_severity = 'info'\n",
            "notify.log.min_severity: \"info\" is not one of 'warning' or 'critical'",
        ),
        ("http = 3\n", "http: 3 is not a section"),
        (
            "[daemon]\nshutdown_timeout = nan\n",
            'daemon.shutdown_timeout: NaN is not a duration like "5m"',
        ),
        ("[retry]\ninterval = inf\n", 'retry.interval: Infinity is not a duration like "5m"'),
        (
            '[paths]\ninbox = "~nosuchuser-facturasd/x"\n',
            'paths.inbox: "~nosuchuser-facturasd/x" names a home folder of a user '
            "that does not exist",
        ),
        (
            '[daemon]\ntimezone = "America"\n',
            'daemon.timezone: "America" is not an IANA time zone like "America/Bogota"',
        ),
        (
            'cache = "redis://:pw@cache:6379/0"\n',
            'cache: "redis://***@cache:6379/***" is not a section',
        ),
    ],
)
def test_errors_name_the_key_the_value_and_why(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, "[workers.local]\nconcurrency = 'x'\n[retry]\ninterval = 'soon'\n")
    assert found == [
        'workers.local.concurrency: "x" is not a whole number',
        'retry.interval: "soon" is not a duration like "5m"',
    ]


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    [line] = problems(tmp_path, '[http]\nbind = "127.0.0.1:8080"\ntimeout 5\n')
    assert line.endswith(
        "facturasd.toml:3:9: TOML syntax error at line 3, column 9: "
        "Expected '=' after a key in a key/value pair"
    )


# ── environment ───────────────────────────────────────────────────────────────────────────


def test_facturasd_variables_override_the_file(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[http]\nbind = "127.0.0.1:8080"\n[workers.local]\nconcurrency = 2\n',
        {
            "FACTURASD_HTTP__BIND": "127.0.0.1:18080",
            "FACTURASD_PATHS__STATE_DIR": "/tmp/x",
            "FACTURASD_WORKERS__LOCAL__CONCURRENCY": "8",
            "FACTURASD_RETRY__SCHEDULE": '["10s", "20s"]',
            "FACTURASD_QUEUES__ALEGRA_SYNC__RATE_LIMIT": "10/m",
            "FACTURASD_CONFIG": "/ignored/for/overrides.toml",
        },
    )
    assert config.http.bind == "127.0.0.1:18080"
    assert config.paths.state_dir == Path("/tmp/x")
    assert config.workers.local.concurrency == 8
    assert config.retry.schedule == [10.0, 20.0]
    assert config.queues["alegra_sync"].rate_limit == RateLimit(10, 60.0)  # type: ignore[index]


def test_seed_names(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "",
        {
            "REDIS_URL": "redis://cache:6379/2",
            "DIAN_MAX_RETRIES": "5",
            "DIAN_RETRY_DELAY": "60",
            "COMPLIANCE_CLEANUP_DAYS": "45.5",
            "CACHE_TTL_CONTACTS": "600",
            "CACHE_TTL_ITEMS": "120",
            "CACHE_TTL_ACCOUNTS": "60",
        },
    )
    assert (config.cache.backend, config.cache.url) == ("redis", "redis://cache:6379/2")
    assert config.retry.max_retries == 5
    assert config.retry.schedule == [60.0, 300.0, 900.0]  # 1, 5 and 15 minutes
    assert config.schedule.compliance_cleanup_after == 45.5 * 86400
    assert (config.cache.ttl.contacts, config.cache.ttl.items, config.cache.ttl.accounts) == (
        600.0,
        120.0,
        60.0,
    )


def test_facturasd_variables_win_over_seed_names(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[retry]\nmax_retries = 1\n",
        {"DIAN_MAX_RETRIES": "5", "FACTURASD_RETRY__MAX_RETRIES": "7"},
    )
    assert config.retry.max_retries == 7


def test_bad_environment_values_name_the_variable(tmp_path: Path) -> None:
    assert problems(
        tmp_path, "", {"FACTURASD_HTTP__BIND": "nope", "DIAN_RETRY_DELAY": "pronto"}
    ) == [
        'DIAN_RETRY_DELAY: "pronto" is not a number of seconds',
        'http.bind (from FACTURASD_HTTP__BIND): "nope" is not an address like '
        '"127.0.0.1:8080" or "[::1]:8080"',
    ]
    assert problems(tmp_path, "", {"COMPLIANCE_CLEANUP_DAYS": "30d"}) == [
        'COMPLIANCE_CLEANUP_DAYS: "30d" is not a number of days'
    ]
    assert problems(tmp_path, "", {"DIAN_RETRY_DELAY": "1m"}) == [
        'DIAN_RETRY_DELAY: "1m" is not a number of seconds'
    ]
    assert problems(tmp_path, "", {"FACTURASD_HTTP__BINDING": "x"}) == [
        'http.binding (from FACTURASD_HTTP__BINDING): unknown key (did you mean "bind"?)'
    ]


def test_secret_files_come_from_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "alegra-token").write_text("t0ken")
    config = load(
        tmp_path,
        '[alegra]\nemail = "a@b.co"\ntoken_file = "alegra-token"\n',
        {"CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert config.alegra.token_file == creds / "alegra-token"
    assert config.alegra.enabled
    assert not load(tmp_path, "").alegra.enabled


# ── the shipped file and check-config ─────────────────────────────────────────────────────


def test_shipped_file_shows_every_key_of_the_schema() -> None:
    """Unknown keys are refused; this keeps the schema and the shipped file in step. Optional
    files are shown commented out, so a fresh start is quiet and the file still documents
    every key."""
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    shipped = flatten(tomllib.loads(text))
    # The commented-out keys and sections read as TOML once their "# " goes (the example
    # companies at the end are left out: they are no defaults).
    examples = text.split("# [[companies]]")[0]
    shown = flatten(
        tomllib.loads(re.sub(r"^# ((?:\[[a-z_.]+\]|[a-z_]+ = ).*)$", r"\1", examples, flags=re.M))
    )
    for key, value in flatten(Config().model_dump(mode="json")).items():
        if key.startswith("companies"):
            continue
        if value is None:
            assert key not in shipped, f"{key} is set in facturasd.toml"
            assert key in shown, f"{key} is not shown commented out in facturasd.toml"
            if value is not None:
                assert shown[key] == value, f"{key} is shown with another value than its default"
        else:
            assert key in shipped, f"{key} is missing from facturasd.toml"
    # and the values it sets are the schema's defaults, so the documentation in it does not lie
    assert load_config(SHIPPED_CONFIG, {}) == Config.model_validate({}, context={"base_dir": REPO})


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_facturasd(*args, env=env or free_bind(), cwd=cwd)


def free_bind(**extra: str) -> dict[str, str]:
    """check-config tries `http.bind`: a fixed port (the default 8080) may be another
    program's on the machine running the tests."""
    return daemon_env(FACTURASD_HTTP__BIND=f"127.0.0.1:{free_port()}", **extra)


@pytest.mark.slow
def test_check_config_accepts_the_shipped_file() -> None:
    result = run_cli("check-config", "--config", str(SHIPPED_CONFIG))
    assert result.returncode == 0, result.stderr
    assert 'daemon.timezone = "America/Bogota"' in result.stdout
    assert "Traceback" not in result.stderr
    assert "warning" not in result.stderr  # a fresh start is quiet


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[http\n", "TOML syntax error at line 1, column 6"),
        ("[http]\nbnd = '1'\n", "http.bnd: unknown key"),
        ("[retry]\nmax_retries = -1\n", "retry.max_retries: -1"),
    ],
)
def test_check_config_exits_2_without_traceback(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_check_config_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    secret = "whsec_aHVudGVyMi1odW50ZXIyLWh1bnRlcjI="
    (tmp_path / "webhook-secret").write_text(secret)
    config.write_text(
        '[notify.webhook]\nenabled = true\nsecret_file = "webhook-secret"\n'
        'url = "https://hooks.example/services/T0/B0/hunter2?token=hunter2&team=7"\n'
        '[notify.nanobot]\nurl = "https://hunter2@bot.example:8443/api"\n'
        '[alegra]\nbase_url = "https://user:hunter2@[::1]:9/api?api_key=hunter2&v=1"\n'
    )
    env = free_bind(REDIS_URL="redis://:s3cr3t-pass@cache:6379/0")
    for extra in ([], ["--json"]):
        result = run_cli("check-config", "--config", str(config), *extra, env=env)
        assert result.returncode == 0, result.stderr
        assert "s3cr3t-pass" not in result.stdout + result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
        assert "redis://***@cache:6379/0" in result.stdout
        assert "https://hooks.example/***?token=***&team=7" in result.stdout
        assert "https://***@bot.example:8443/***" in result.stdout
        assert "https://***@[::1]:9/api?api_key=***&v=1" in result.stdout


@pytest.mark.slow
def test_check_config_json_and_folder_warnings(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    config = tmp_path / "c.toml"
    inbox = shm / f"facturasd-test-{os.getpid()}"  # not created: check-config only looks
    config.write_text(f'[paths]\ninbox = "{inbox}"\narchive = "{tmp_path / "a"}"\n')
    result = run_cli("check-config", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert any("paths.archive is on another filesystem" in w for w in report["warnings"])
    assert report["errors"] == []


@pytest.mark.slow
def test_check_config_reports_a_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_text("not a folder")
    config = tmp_path / "c.toml"
    config.write_text('[paths]\ninbox = "inbox"\n')
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"paths.inbox: '{tmp_path / 'inbox'}' exists and is not a folder" in result.stderr


@pytest.mark.slow
def test_check_config_puts_the_problems_first_and_ends_with_a_verdict(tmp_path: Path) -> None:
    """Both streams as a terminal or the journal shows them, in the order they are written."""

    def seen(config: Path) -> tuple[int, list[str]]:
        result = subprocess.run(
            [PYTHON, "-m", "facturasd", "check-config", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=free_bind(),
            timeout=60,
        )
        return result.returncode, result.stdout.splitlines()

    fine = tmp_path / "fine.toml"
    fine.write_text('[http]\nbind = "127.0.0.1:9000"\n')
    code, lines = seen(fine)
    assert code == 0
    assert lines[0].startswith("paths.state_dir = ") and lines[-1] == "OK"

    (tmp_path / "inbox").write_text("not a folder")
    wrong = tmp_path / "wrong.toml"
    # (a secret file of a channel that is off: only a warning)
    wrong.write_text('[paths]\ninbox = "inbox"\n[notify.nanobot]\ntoken_file = "nada"\n')
    code, lines = seen(wrong)
    assert code == 2
    assert lines[0] == f"error: paths.inbox: '{tmp_path / 'inbox'}' exists and is not a folder"
    assert lines[1].startswith("warning: notify.nanobot.token_file: ")
    assert lines[2].startswith("paths.state_dir = ")
    assert lines[-1] == "1 problem, 1 warning"

    broken = tmp_path / "broken.toml"
    broken.write_text("[http\n")
    code, lines = seen(broken)
    assert code == 2
    assert "TOML syntax error at line 1, column 6" in lines[0]
    assert lines[-1] == "1 problem"


@pytest.mark.slow
def test_config_is_found_through_the_environment_then_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / "facturasd.toml").write_text('[http]\nbind = "127.0.0.1:9999"\n')
    other = tmp_path / "other.toml"
    other.write_text('[http]\nbind = "127.0.0.1:7777"\n')
    from_cwd = run_cli("check-config", cwd=tmp_path, env=daemon_env())
    from_env = run_cli("check-config", cwd=tmp_path, env=daemon_env(FACTURASD_CONFIG=str(other)))
    assert 'http.bind = "127.0.0.1:9999"' in from_cwd.stdout
    assert 'http.bind = "127.0.0.1:7777"' in from_env.stdout


@pytest.mark.slow
def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"facturasd \d+\.\d+\.\d+\n", result.stdout)
