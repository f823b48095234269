"""The REST API under /api/v1/ as an integrator uses it, over real HTTP against the app built
from the daemon's real services on a ledger filled as the daemon fills it: actions need a
token of http.token_file and are recorded in the audit trail under its name, reads are open on
loopback only, errors are JSON, and openapi.json lists exactly the routes the server has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from facturasd.cli import main
from facturasd.constants import DATABASE_FILE
from facturasd.errors import ConfigError
from facturasd.store import audit
from facturasd.web import tokens
from facturasd.web.api import PREFIX, Api
from facturasd.web.app import create_app
from tests.support import (
    ACCOUNT,
    DaemonProcess,
    daemon_env,
    enqueue,
    free_port,
    invoice,
    port_of,
    query,
    serving,
    take,
    wait_healthy,
    wait_until,
    write_config,
)

CONTABILIDAD, ERP = "s3cret-contabilidad-0001", "s3cret-erp-0002"
TOKEN_FILE = f"# who may act through the API\ncontabilidad:{CONTABILIDAD}\n\nerp:{ERP}\n"


@pytest.fixture
def office(tmp_path: Path) -> Path:
    """A configuration with two tokens, two invoices read and checked, and today's report."""
    (tmp_path / "http-token").write_text(TOKEN_FILE)
    config = write_config(tmp_path, 'token_file = "http-token"\n')
    take(config, {"factura 1.xml": invoice(1), "factura 2.xml": invoice(2)})
    assert main(["report", "--config", str(config)]) == 0
    return config


@pytest.fixture
def listed(office: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """`invoices list --json` of the office."""
    capsys.readouterr()
    assert main(["invoices", "list", "--json", "--config", str(office)]) == 0
    found: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def status_json(office: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`status --json` of the office, with no daemon running."""
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(office)]) == 0
    found: dict[str, Any] = json.loads(capsys.readouterr().out)
    return found


@pytest.mark.anyio
async def test_an_action_needs_a_token_and_is_audited_under_its_name(office: Path) -> None:
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        url = f"{services.url}/invoices/1/reprocess"  # type: ignore[attr-defined]
        body = {"reason": "reglas nuevas"}
        missing = await http.post(url, json=body)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await http.post(url, json=body, headers=bearer(CONTABILIDAD + "x"))
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_token"
        # Refused: nothing done, nothing recorded.
        assert await audit.entries(services.db) == []
        done = await http.post(url, json=body, headers=bearer(CONTABILIDAD))
        assert done.status_code == 202, done.text
        said = done.json()
        assert (said["action"], said["result"], said["state"]) == (
            "reprocess",
            "queued_again",
            "received",
        )
        assert said["actor"] == "contabilidad"
        (entry,) = await audit.entries(services.db)
        assert (entry.actor, entry.via, entry.action, entry.target, entry.reason) == (
            "contabilidad",
            "api",
            "reprocess",
            "invoice/1",
            "reglas nuevas",
        )
        # The invoice's history says who, as for an action from the CLI.
        shown = (await http.get(f"{services.url}/invoices/1")).json()  # type: ignore[attr-defined]
        assert shown["state"] == "received"
        assert shown["history"][-1]["actor"] == "contabilidad"
        assert shown["history"][-1]["reason"] == "reprocess: reglas nuevas"


@pytest.mark.anyio
async def test_a_refused_action_is_a_json_error_in_the_office_language(office: Path) -> None:
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        base = services.url  # type: ignore[attr-defined]
        state = (await http.get(f"{base}/invoices/2")).json()["state"]
        assert state != "needs_review"
        refused = await http.post(
            f"{base}/invoices/2/accept", json={"reason": "visto"}, headers=bearer(ERP)
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "not_in_review"
        assert "#2" in refused.json()["error"]["message"]
        no_reason = await http.post(f"{base}/invoices/2/discard", headers=bearer(ERP))
        assert no_reason.status_code == 400
        assert no_reason.json()["error"]["code"] == "bad_request"
        missing = await http.post(
            f"{base}/invoices/99/discard", json={"reason": "x"}, headers=bearer(ERP)
        )
        assert missing.status_code == 404
        assert missing.json()["error"] == {"code": "no_invoice", "message": "no hay factura #99"}
        assert await audit.entries(services.db) == []


@pytest.mark.anyio
async def test_reads_are_open_on_loopback_and_give_what_the_cli_gives(
    office: Path, listed: list[dict[str, object]]
) -> None:
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        base = services.url  # type: ignore[attr-defined]
        found = (await http.get(f"{base}/invoices")).json()
        assert found == {"invoices": listed, "matched": len(listed)}
        one = (await http.get(f"{base}/invoices", params={"limit": "1"})).json()
        assert [i["id"] for i in one["invoices"]] == [listed[0]["id"]]
        assert one["matched"] == 2
        state = listed[0]["state"]
        same = (await http.get(f"{base}/invoices", params={"state": state})).json()
        assert same["matched"] == sum(i["state"] == state for i in listed)
        wrong = await http.get(f"{base}/invoices", params={"state": "nonsense"})
        assert wrong.status_code == 400
        assert wrong.json()["error"]["code"] == "bad_parameter"
        shown = (await http.get(f"{base}/invoices/1", params={"lang": "en"})).json()
        assert {"history", "attempts", "alerts", "inspection", "booking"} <= set(shown)
        assert (await http.get(f"{base}/invoices/9")).json()["error"]["code"] == "not_found"
        stats = (await http.get(f"{base}/stats")).json()
        assert set(stats) == {"compliance", "queues"}
        assert (await http.get(f"{base}/alerts")).status_code == 200
        reports = (await http.get(f"{base}/reports")).json()["reports"]
        assert reports and set(reports[0]["formats"]) == {"csv", "json", "md"}
        day = reports[0]["date"]
        report = (await http.get(f"{base}/reports/{day}")).json()
        written = services.config.paths.reports / f"reporte-{day}.json"
        assert report == json.loads(written.read_text(encoding="utf-8"))
        sneaky = await http.get(f"{base}/reports/..%2Ffacturasd")
        assert sneaky.status_code == 404
        assert (await http.get(f"{base}/nothing-here")).json()["error"]["code"] == "not_found"


@pytest.mark.anyio
async def test_the_dashboards_reads_give_what_status_and_the_reports_give(
    office: Path, listed: list[dict[str, object]], status_json: dict[str, Any]
) -> None:
    said = status_json
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        base = services.url  # type: ignore[attr-defined]
        status = (await http.get(f"{base}/status")).json()
        # The same figures as the CLI's; the health is the serving daemon's own.
        assert set(status) == set(said)
        for key in ("today", "needs_person", "last_report", "alerts_open"):
            assert status[key] == said[key], key
        for queue in said["queues"].values():  # (ages aside: time passed between the two)
            queue.pop("oldest_age_seconds")
        assert {
            name: {k: v for k, v in q.items() if k != "oldest_age_seconds"}
            for name, q in status["queues"].items()
        } == said["queues"]
        assert status["health"]["daemon"] == "running"
        assert said["health"]["daemon"] == "offline"
        hours = (await http.get(f"{base}/stats/hourly")).json()["hours"]
        assert len(hours) == 24
        assert sum(h["total"] for h in hours) == len(listed)  # all received just now
        now = hours[-1]["by_state"]
        assert now == {s: n for s, n in said["today"]["by_state"].items() if n}
        assert (await http.get(f"{base}/stats/hourly?hours=0")).status_code == 400
        day = (await http.get(f"{base}/reports")).json()["reports"][0]["date"]
        table = await http.get(f"{base}/reports/{day}", params={"format": "csv"})
        assert table.headers["content-type"].startswith("text/csv")
        written = services.config.paths.reports / f"reporte-{day}.csv"
        assert table.content == written.read_bytes()
        assert f'filename="reporte-{day}.csv"' in table.headers["content-disposition"]
        page = await http.get(f"{base}/reports/{day}", params={"format": "md"})
        assert page.headers["content-type"].startswith("text/markdown")
        bad = await http.get(f"{base}/reports/{day}", params={"format": "pdf"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_parameter")


@pytest.mark.anyio
async def test_reads_need_a_token_when_listening_beyond_loopback(office: Path) -> None:
    async with (
        serving(office, bind=f"0.0.0.0:{free_port()}") as services,
        httpx.AsyncClient(timeout=30) as http,
    ):
        base = services.url  # type: ignore[attr-defined]
        assert (await http.get(f"{base}/invoices")).status_code == 401
        assert (await http.get(f"{base}/invoices", headers=bearer(ERP))).status_code == 200


@pytest.mark.anyio
async def test_what_is_not_a_plain_local_read_is_refused_as_json(office: Path) -> None:
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        base = services.url  # type: ignore[attr-defined]
        host = base.split("/")[2]
        assert (await http.get(f"{base}/invoices")).status_code == 200
        assert (await http.head(f"{base}/invoices")).status_code == 200
        # A page of another site loaded by a browser on this machine, its name resolved to
        # 127.0.0.1 (DNS rebinding), or a request a proxy forwards: not local, a token needed.
        for headers in ({"Host": "facturas.example"}, {"X-Forwarded-For": "192.0.2.7"}):
            foreign = await http.get(f"{base}/invoices", headers=headers)
            assert foreign.status_code == 401, headers
            assert foreign.json()["error"]["code"] == "unauthorized"
        named = await http.get(
            f"{base}/invoices", headers={"Host": host.replace("127.0.0.1", "localhost")}
        )
        assert named.status_code == 200
        # Numbers that are not plain digits, or too big for the ledger: a JSON answer each.
        for path, status in (
            ("/invoices/%C2%B2", 404),
            ("/invoices/99999999999999999999999", 404),
            ("/invoices?limit=%C2%B2", 400),
            ("/invoices?limit=99999999999999999999999", 400),
            ("/stats/hourly?hours=%C2%B2", 400),
        ):
            answer = await http.get(base + path)
            assert answer.status_code == status, path
            assert set(answer.json()["error"]) == {"code", "message"}, path
        # A method the route does not have is said before any token is asked for.
        removed = await http.delete(f"{base}/invoices/1")
        assert (removed.status_code, removed.json()["error"]["code"]) == (405, "method_not_allowed")
        # A token header that is not text: refused as a wrong token.
        garbled = await http.post(
            f"{base}/invoices/1/reprocess",
            json={"reason": "x"},
            headers={"Authorization": b"Bearer \xff\xfe"},
        )
        assert (garbled.status_code, garbled.json()["error"]["code"]) == (401, "invalid_token")
        assert await audit.entries(services.db) == []


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    """An office with one company, ACME, that receives none of its invoices."""
    (tmp_path / "http-token").write_text(TOKEN_FILE)
    config = write_config(
        tmp_path,
        'token_file = "http-token"\n'
        "[[companies]]\nslug = 'acme'\nname = 'ACME S.A.S.'\ncountry = 'CO'\n"
        "tax_id = '900000001'\n",
    )
    take(config, {"factura 1.xml": invoice(1)})
    return config


@pytest.mark.anyio
async def test_assigning_to_a_company_that_is_not_configured_is_a_bad_request(
    acme: Path,
) -> None:
    async with serving(acme) as services, httpx.AsyncClient(timeout=30) as http:
        base = services.url  # type: ignore[attr-defined]
        refused = await http.post(
            f"{base}/invoices/1/assign",
            json={"company": "acmee", "reason": "es de ACME"},
            headers=bearer(ERP),
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "no_company"
        assert "acme" in refused.json()["error"]["message"]
        done = await http.post(
            f"{base}/invoices/1/assign",
            json={"company": "acme", "reason": "es de ACME"},
            headers=bearer(ERP),
        )
        assert done.status_code == 202, done.text


@pytest.mark.anyio
async def test_openapi_lists_every_route_and_no_other(office: Path) -> None:
    async with serving(office) as services, httpx.AsyncClient(timeout=30) as http:
        document = (await http.get(f"{services.url}/openapi.json")).json()  # type: ignore[attr-defined]
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    app = create_app(services.health, None, None, Api(services, tokens.Tokens()))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(PREFIX)
        and route.method != "HEAD"  # (aiohttp answers HEAD beside each GET)
    }
    assert documented == served


def test_a_token_file_line_that_is_wrong_is_named_by_its_number_not_its_content() -> None:
    text = "# tokens\nok:abc123\nsin-dos-puntos-secreto\nok:otro\nerp:abc123\n"
    with pytest.raises(ConfigError) as refused:
        tokens.parse(text)
    problems = refused.value.problems
    assert [p.split(":")[1].strip() for p in problems] == ["line 3 is not name", "line 4", "line 5"]
    assert not any("secreto" in p or "abc123" in p or "otro" in p for p in problems)
    found = tokens.parse("contabilidad:abc\n\n# fin\n")
    assert found.name_of("abc") == "contabilidad"
    assert found.name_of("ab") is None


def test_the_cli_actions_are_in_the_audit_trail_too(
    office: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(office)
    assert main(["invoices", "discard", "2", "--reason", "copia", "--config", config]) == 0
    capsys.readouterr()
    assert main(["audit", "--json", "--config", config]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["actor"], row["via"], row["action"], row["target"], row["reason"]) == (
        ACCOUNT,
        "cli",
        "discard",
        "invoice/2",
        "copia",
    )
    assert row["detail"] == {"state": "discarded"}
    assert main(["audit", "--config", config]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "FECHA", "QUIÉN", "VÍA", "ACCIÓN", "SOBRE", "MOTIVO"]
    assert line.split()[-4:] == ["cli", "discard", "invoice/2", "copia"]
    assert main(["audit", "--since", "2999-01-01", "--config", config]) == 0
    assert capsys.readouterr().out == "No hay acciones que mostrar.\n"


def test_who_acts_from_the_cli_is_the_account_and_the_person_behind_sudo(
    office: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # $USER is anyone's to set: not who acted. Under sudo, the person who ran it is named.
    monkeypatch.setenv("USER", "impostor")
    monkeypatch.setenv("LOGNAME", "impostor")
    config = str(office)
    assert main(["invoices", "discard", "1", "--reason", "copia", "--config", config]) == 0
    monkeypatch.setenv("SUDO_USER", "ana")
    assert main(["invoices", "discard", "2", "--reason", "copia", "--config", config]) == 0
    capsys.readouterr()
    assert main(["audit", "--json", "--config", config]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["actor"] for r in rows) == sorted([ACCOUNT, f"ana (as {ACCOUNT})"])


def test_a_job_run_again_is_in_the_audit_trail(
    office: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = office.parent / "state" / DATABASE_FILE
    (dead,) = enqueue(db_path, [("alegra_sync", "ping", {"invoice": 1})])
    query(db_path, "UPDATE jobs SET state = 'dead' WHERE id = ?", (dead,))
    retry = ["jobs", "--retry", str(dead), "--reason", "Alegra arreglado", "--config", str(office)]
    assert main(retry) == 0
    capsys.readouterr()
    assert main(["audit", "--json", "--config", str(office)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["via"], row["action"], row["target"], row["reason"]) == (
        "cli",
        "requeue",
        f"job/{dead}",
        "Alegra arreglado",
    )
    assert row["detail"] == {"queue": "alegra_sync", "kind": "ping", "invoice": 1}
    # Nothing to run again: refused, and nothing recorded.
    assert main(["jobs", "--retry", str(dead), "--config", str(office)]) == 1
    assert query(db_path, "SELECT COUNT(*) FROM audit") == [(1,)]


def test_check_config_names_a_wrong_token_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "http-token").write_text("contabilidad:abc123\nerp secreto-del-erp\n")
    config = write_config(tmp_path, 'token_file = "http-token"\n')
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: http.token_file ({tmp_path / 'http-token'}): line 2 is not name:token" in err
    assert "secreto" not in err and "abc123" not in err


@pytest.mark.slow
def test_the_running_daemon_serves_the_api(office: Path) -> None:
    """`facturasd run` as a subprocess: its /api/v1 takes an action by the token's name, and
    its workers take the job the action queued (the invoice is read again)."""
    port = port_of(office)
    daemon = DaemonProcess(office, daemon_env(), log_dir=office.parent)
    try:
        wait_healthy(port, daemon)
        base = f"http://127.0.0.1:{port}{PREFIX}"
        before = httpx.get(f"{base}/invoices/1", timeout=10).json()
        refused = httpx.post(f"{base}/invoices/1/reprocess", json={"reason": "x"}, timeout=10)
        assert refused.status_code == 401
        done = httpx.post(
            f"{base}/invoices/1/reprocess",
            json={"reason": "reglas nuevas"},
            headers=bearer(ERP),
            timeout=10,
        )
        assert done.status_code == 202, done.text

        def read_again() -> bool:
            shown = httpx.get(f"{base}/invoices/1", timeout=10).json()
            return bool(
                shown["state"] == before["state"] and shown["history"][-1]["actor"] != "erp"
            )

        wait_until(read_again, what="the reprocessed invoice read again by the daemon")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    rows = query(office.parent / "state" / DATABASE_FILE, "SELECT actor, via, action FROM audit")
    assert rows == [("erp", "api", "reprocess")]
