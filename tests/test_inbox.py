"""From inbox to ledger: the watcher, the folders, the parse-and-check stage, `invoices`.

The daemon runs as a real subprocess on temporary folders; files are dropped the way people
and mail fetchers drop them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from facturasd.inbox.archive import dated_name, move
from facturasd.inbox.stability import StabilityTracker
from facturasd.inbox.watcher import wanted
from tests.pdfs import text_pdf, with_attachments
from tests.support import (
    REPO,
    DaemonProcess,
    cufe,
    daemon_env,
    drop,
    get_health,
    invoice,
    port_of,
    query,
    run_facturasd,
    wait_healthy,
    wait_until,
    write_config,
)

SAMPLES = REPO.parent / "shared" / "samples"
FV7 = SAMPLES / "dian" / "siigo-blindacces-FV7.xml"
FAST = '[inbox]\nstable_seconds = "300ms"\nrescan_interval = "1s"\n'


# ── pure parts ────────────────────────────────────────────────────────────────────────────


def test_a_file_is_ready_only_after_it_held_still() -> None:
    tracker = StabilityTracker(2.0)
    path = Path("inbox/a.xml")
    tracker.observe(path, 10, 1, now=0.0)
    tracker.observe(path, 20, 2, now=1.5)  # still growing: the wait starts again
    assert tracker.ready(3.0) == []
    assert tracker.next_due(3.0) == pytest.approx(0.5)
    tracker.observe(path, 20, 2, now=3.4)  # the same: the wait goes on
    assert tracker.ready(3.5) == [path]
    tracker.forget(path)
    assert tracker.ready(10.0) == [] and tracker.next_due(10.0) is None


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("factura.xml", True),
        ("FACTURA.XML", True),
        ("paquete.ZIP", True),
        ("sub/impresa.pdf", True),
        ("factura.xml.part", False),
        ("factura.xml~", False),
        (".factura.xml", False),
        ("descarga.crdownload", False),
        ("x.tmp", False),
        ("Thumbs.db", False),
        ("desktop.ini", False),
        ("__MACOSX/factura.xml", False),
        (".oculta/factura.xml", False),
        ("foto.jpg", False),
    ],
)
def test_which_files_are_taken(name: str, taken: bool) -> None:
    assert wanted(Path(name)) is taken


def test_long_names_fit_the_filesystem_and_keep_their_extension() -> None:
    from datetime import datetime

    name = "Factura electrónica ñandú & cía " * 20 + ".xml"
    placed = dated_name(datetime(2026, 11, 2), "ab" * 32, name)
    assert placed.parts[:3] == ("2026", "11", "02")
    assert placed.name.startswith("abababababab-") and placed.name.endswith(".xml")
    assert len((placed.name + ".motivo.txt").encode()) <= 255


def test_a_move_never_replaces_a_file(tmp_path: Path) -> None:
    source, dest = tmp_path / "a.xml", tmp_path / "out" / "a.xml"
    source.write_text("one")
    dest.parent.mkdir()
    dest.write_text("two")
    with pytest.raises(FileExistsError):
        move(source, dest)
    assert source.read_text() == "one" and dest.read_text() == "two"
    dest.unlink()
    move(source, dest)
    move(source, dest)  # done already: nothing to do
    assert dest.read_text() == "one" and not source.exists()
    # Placed before a crash (a second name of the same file): only the unlink is left.
    source.write_text("three")
    other = tmp_path / "out" / "b.xml"
    os.link(source, other)
    move(source, other)
    assert other.read_text() == "three" and not source.exists()


def test_a_move_across_filesystems_copies_whole(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    source = shm / f"facturasd-test-{os.getpid()}.xml"
    source.write_bytes(FV7.read_bytes())
    dest = tmp_path / "archive" / "fv7.xml"
    move(source, dest)
    assert dest.read_bytes() == FV7.read_bytes() and not source.exists()
    assert not list(dest.parent.glob(".*.part"))


# ── the daemon ────────────────────────────────────────────────────────────────────────────


class Office:
    """A daemon on temporary folders, and what a person sees of it."""

    def __init__(self, tmp_path: Path, extra: str = "", wrapper: Sequence[str] = ()) -> None:
        self.root = tmp_path
        self.config = write_config(tmp_path, FAST + extra)
        self.port = port_of(self.config)
        self.data = tmp_path / "data"
        self.inbox = self.data / "inbox"
        self.db = tmp_path / "state" / "facturasd.db"
        self.wrapper = wrapper
        self.daemon: DaemonProcess | None = None

    def start(self) -> None:
        self.daemon = DaemonProcess(
            self.config, daemon_env(), log_dir=self.root, wrapper=self.wrapper
        )
        wait_healthy(self.port, self.daemon)

    def stop(self) -> None:
        if self.daemon is not None:
            assert self.daemon.stop() == 0, self.daemon.stderr()
            self.daemon = None

    def kill(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
            self.daemon = None

    def rows(self, sql: str = "SELECT state, original_name FROM invoices ORDER BY id") -> list:
        return query(self.db, sql) if self.db.exists() else []

    def settled(self, count: int, timeout: float = 60.0) -> list[tuple[object, ...]]:
        """Waits until `count` invoices are past `received`; returns (id, state, name)."""

        def done() -> bool:
            rows = self.rows("SELECT state FROM invoices")
            return len(rows) >= count and all(state != "received" for (state,) in rows)

        wait_until(done, timeout, f"{count} invoices settled")
        return self.rows("SELECT id, state, original_name FROM invoices ORDER BY id")

    def scanned(self) -> None:
        """Waits until the watcher scanned the whole inbox after this call and has nothing
        waiting or being taken: what it could find there by now is in the ledger."""
        before = self.watcher()["rescans"]

        def idle() -> bool:
            now = self.watcher()
            # Two: the scan under way at the call may have passed the file's folder already.
            return now["rescans"] >= before + 2 and now["waiting"] == now["taking"] == 0

        wait_until(idle, 30, "two rescans, nothing waiting or being taken")

    def watcher(self) -> dict[str, Any]:
        """The watcher's counts, as /health shows them."""
        check: dict[str, Any] = get_health(self.port).json()["checks"]["inbox:unreadable"][0]
        return check

    def files(self, folder: str) -> list[Path]:
        return sorted(
            p for p in (self.data / folder).rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_facturasd(*args, "--config", str(self.config))


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    found = Office(tmp_path)
    found.start()
    yield found
    found.kill()


@pytest.mark.slow
def test_a_file_written_slowly_is_taken_once_and_whole(office: Office) -> None:
    data = FV7.read_bytes()
    target = office.inbox / "lento.xml"
    with target.open("wb") as handle:  # a Samba client copying over a slow link
        for start in range(0, len(data), len(data) // 10 + 1):
            handle.write(data[start : start + len(data) // 10 + 1])
            handle.flush()
            time.sleep(0.3)
    [(_, state, name)] = office.settled(1)
    assert (state, name) == ("checked", "lento.xml")
    [archived] = office.files("archive")
    assert archived.read_bytes() == data
    assert not target.exists()


@pytest.mark.slow
def test_names_people_use_and_same_names_in_two_folders(office: Office) -> None:
    names = [
        "Factura Nº 7 de Ñandú & Cía.xml",
        "x" * 240 + ".xml",
        "proveedor a/factura.xml",
        "proveedor b/factura.xml",
    ]
    for n, name in enumerate(names):
        drop(office.inbox, name, invoice(n))
    # A name that is not UTF-8 (a Latin-1 client), and a long one rejected with its reason.
    latin1 = os.fsdecode(b"Compa\xf1ia.xml")
    drop(office.inbox, latin1, invoice(9))
    drop(office.inbox, "y" * 245 + ".xml", b"not an invoice")
    rows = office.settled(len(names) + 2)
    taken = sorted(name for _, _, name in rows)
    assert taken == sorted(
        [*(PurePosixPath(n).name for n in names), "Compa\\xf1ia.xml", "y" * 245 + ".xml"]
    )
    assert [state for _, state, name in rows if name.startswith("y")] == ["unreadable"]
    assert {state for _, state, name in rows if not name.startswith("y")} == {"checked"}
    assert len(office.files("archive")) == len(names) + 1
    assert any(p.name.endswith(".motivo.txt") for p in office.files("rejected"))
    assert not [p for p in office.inbox.rglob("*") if p.is_file()]
    assert office.daemon is not None and "crashed" not in office.daemon.stderr()


@pytest.mark.slow
def test_duplicates_rejections_and_a_pdf_linked_to_its_xml(office: Office) -> None:
    first = invoice(1)
    drop(office.inbox, "original.xml", first)
    office.settled(1)
    drop(office.inbox, "reenviada.xml", first)  # the same bytes
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as package:
        package.writestr("fe.xml", first)
    drop(office.inbox, "paquete.zip", zipped.getvalue())  # the same UUID, other bytes
    drop(office.inbox, "mal total.xml", invoice(2, prepaid="5.00", override={"total": "1.00"}))
    drop(office.inbox, "basura.xml", b"\x89PNG not an invoice")
    printed = text_pdf(
        ["Factura electrónica de venta FE1001", f"CUFE: {cufe(3)}", "NIT 900123456-7"]
    )
    drop(office.inbox, "impresa.pdf", printed)
    rows = {name: (id_, state) for id_, state, name in office.settled(6)}
    assert rows["reenviada.xml"][1] == "duplicate"
    assert rows["paquete.zip"][1] == "duplicate"
    assert rows["mal total.xml"][1] == "rejected"
    assert rows["basura.xml"][1] == "unreadable"
    assert rows["impresa.pdf"][1] == "needs_review"
    # Each where a person looks for it, with the reason beside it.
    assert {p.name.split("-", 1)[1] for p in office.files("duplicates")} >= {
        "reenviada.xml",
        "reenviada.xml.motivo.txt",
        "paquete.zip",
        "paquete.zip.motivo.txt",
    }
    [motivo] = [
        p for p in office.files("duplicates") if p.name.endswith("reenviada.xml.motivo.txt")
    ]
    text = motivo.read_text(encoding="utf-8")
    assert f"#{rows['original.xml'][0]}" in text and "original.xml" in text
    assert text.index("Archivo repetido") < text.index("Duplicate file")
    [reason] = [p for p in office.files("rejected") if p.name.endswith("mal total.xml.motivo.txt")]
    assert "CO-TOTAL-MISMATCH" in reason.read_text(encoding="utf-8")
    assert "FMT-NOT-XML" in next(
        p for p in office.files("rejected") if p.name.endswith("basura.xml.motivo.txt")
    ).read_text(encoding="utf-8")
    # The XML of the PDF arrives: the PDF becomes its printed copy.
    drop(office.inbox, "la del pdf.xml", invoice(3))
    wait_until(
        lambda: (
            office.rows(f"SELECT state FROM invoices WHERE id = {rows['impresa.pdf'][0]}")
            == [("linked",)]
        ),
        30,
        "the PDF linked",
    )
    # A corrected invoice with the UUID of a rejected one supersedes it.
    drop(office.inbox, "corregida.xml", invoice(2, prepaid="5.00"))
    wait_until(
        lambda: (
            office.rows(f"SELECT state FROM invoices WHERE id = {rows['mal total.xml'][0]}")
            == [("discarded",)]
        ),
        30,
        "the rejected one superseded",
    )
    assert ("checked",) in office.rows(
        "SELECT state FROM invoices WHERE original_name = 'corregida.xml'"
    )


@pytest.mark.slow
def test_files_dropped_while_down_and_files_no_event_reports(tmp_path: Path) -> None:
    office = Office(tmp_path, "watch = false\n")
    office.inbox.mkdir(parents=True)
    drop(office.inbox, "antes.xml", invoice(1))  # the daemon is not running
    office.start()
    try:
        office.settled(1)
        # No watcher at all: only the rescan (every second here) can find it.
        drop(office.inbox, "sin evento.xml", invoice(2))
        rows = office.settled(2, timeout=30)
        assert [state for _, state, _ in rows] == ["checked", "checked"]
    finally:
        office.kill()


@pytest.mark.slow
def test_symlinks_out_of_the_inbox_are_not_followed(tmp_path: Path) -> None:
    office = Office(tmp_path)
    office.inbox.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "otra.xml").write_bytes(invoice(4))
    (office.inbox / "carpeta").symlink_to(elsewhere)  # a linked folder, there at start-up
    outside = tmp_path / "secreto.xml"
    outside.write_bytes(invoice(5))
    (office.inbox / "enlace.xml").symlink_to(outside)
    office.start()
    try:
        drop(office.inbox, "normal.xml", invoice(6))
        office.settled(1)
        (elsewhere / "nueva.xml").write_bytes(invoice(7))
        office.scanned()
        assert [name for _, _, name in office.settled(1)] == ["normal.xml"]
        assert outside.exists() and (elsewhere / "otra.xml").exists()
        assert (elsewhere / "nueva.xml").exists()
        assert office.daemon is not None
        assert office.daemon.stderr().count("enlace.xml leads outside the inbox") == 1
    finally:
        office.kill()


@pytest.mark.slow
def test_a_file_that_does_not_open_stays_and_shows_in_health(tmp_path: Path) -> None:
    # Root opens every file: the daemon runs without the capabilities that let it, as the
    # service's own user would.
    wrapper = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    )
    office = Office(tmp_path, wrapper=wrapper)
    office.start()
    try:
        locked = drop(office.inbox, "sin permiso.xml", invoice(1))
        locked.chmod(0)
        closed = office.inbox / "cerrada"
        drop(closed, "dentro.xml", invoice(3))
        closed.chmod(0)  # a folder that cannot be listed: the rest of the inbox goes on
        drop(office.inbox, "legible.xml", invoice(2))
        office.settled(1)

        def names_folder() -> bool:
            check = get_health(office.port).json()["checks"]["inbox:unreadable"][0]
            return "cerrada" in check.get("output", "")

        wait_until(names_folder, 30, "/health names the folder")
        closed.chmod(0o755)

        def warned() -> bool:
            check = get_health(office.port).json()["checks"]["inbox:unreadable"][0]
            return check["status"] == "warn" and "sin permiso.xml" in check.get("output", "")

        wait_until(warned, 30, "/health names the file")
        assert locked.exists()
        locked.chmod(0o644)  # fixed: the next rescan takes it
        rows = office.settled(3, timeout=30)
        assert {name for _, _, name in rows} == {"sin permiso.xml", "legible.xml", "dentro.xml"}
        wait_until(lambda: not warned(), 30, "/health clear again")
    finally:
        office.kill()


@pytest.mark.slow
def test_a_thousand_files_at_once(office: Office) -> None:
    staging = office.root / "staging"
    staging.mkdir()
    for n in range(1000):
        (staging / f"f{n:04}.xml").write_bytes(invoice(n))
    for path in staging.iterdir():
        path.rename(office.inbox / path.name)
    rows = office.settled(1000, timeout=300)
    assert len(rows) == 1000
    assert len({name for _, _, name in rows}) == 1000
    assert {state for _, state, _ in rows} == {"checked"}
    assert len(office.files("archive")) == 1000
    assert not list(office.inbox.iterdir())


@pytest.mark.slow
def test_kill_9_while_files_leave_the_inbox(tmp_path: Path) -> None:
    office = Office(tmp_path)
    office.inbox.mkdir(parents=True)
    names = [f"f{n:03}.xml" for n in range(500)]
    for n, name in enumerate(names):
        # Some duplicates and rejections among them, so every folder is in play.
        data = invoice(n % 450) if n % 50 else invoice(n, override={"total": "1.00"})
        (office.inbox / name).write_bytes(data)
    office.start()
    wait_until(lambda: len(list(office.inbox.iterdir())) < 500, 60, "the first file leaves")
    office.kill()  # SIGKILL, mid-ingest
    left = len(list(office.inbox.iterdir()))
    assert 0 < left < 500, "the kill should land while files are being taken"
    office.start()
    try:
        office.settled(500, timeout=300)
        rows = office.rows("SELECT original_name, path FROM invoices")
        assert sorted(name for name, _ in rows) == names  # each once in the ledger
        placed = [
            p for folder in ("archive", "rejected", "duplicates") for p in office.files(folder)
        ]
        documents = [p for p in placed if not p.name.endswith(".motivo.txt")]
        assert sorted(p.name.split("-", 1)[1] for p in documents) == names  # each in one place
        assert {str(p) for p in documents} == {path for _, path in rows}
        assert not list(office.inbox.iterdir())
    finally:
        office.kill()


# ── the CLI beside the daemon ─────────────────────────────────────────────────────────────

COMPANY = """
[[companies]]
slug = "acme"
name = "Compradora de Prueba SAS"
country = "CO"
tax_id = "901956924"
"""


# A receiver that is not the company (its NIT with its right check digit).
STRANGER = {"customer.nit": "900765432", "customer.dv": "6"}


@pytest.mark.slow
def test_review_from_the_command_line(tmp_path: Path) -> None:
    office = Office(tmp_path, COMPANY)
    office.start()
    try:
        assert (office.inbox / "acme").is_dir()  # each company's folder, made at start
        drop(office.inbox, "acme/suya.xml", invoice(1, override=STRANGER))
        drop(office.inbox, "ajena.xml", invoice(2, override=STRANGER))
        drop(office.inbox, "propia.xml", invoice(3))
        rows = {name: (id_, state) for id_, state, name in office.settled(3)}
        assert rows["suya.xml"][1] == "checked"  # its folder says whose it is
        assert rows["propia.xml"][1] == "checked"  # the receiver's NIT says it
        assert rows["ajena.xml"][1] == "needs_review"
        listed = json.loads(
            office.cli("invoices", "list", "--state", "needs_review", "--json").stdout
        )
        assert [row["original_name"] for row in listed] == ["ajena.xml"]
        assert listed[0]["uuid"] == cufe(2)
        review_id = str(rows["ajena.xml"][0])
        assigned = office.cli(
            "invoices", "assign", review_id, "--company", "acme", "--reason", "es nuestra"
        )
        assert assigned.returncode == 0, assigned.stderr
        shown = json.loads(office.cli("invoices", "show", review_id, "--json").stdout)
        assert (shown["state"], shown["company"]) == ("checked", "acme")
        # (then, checked, it goes to the authority: a compliance event may follow)
        changes = [e for e in shown["history"] if e["state"]]
        assert changes[-1]["reason"] == "assigned to acme: es nuestra"
        assert shown["inspection"]["document"]["uuid"] == cufe(2)
        discarded = office.cli(
            "invoices", "discard", str(rows["propia.xml"][0]), "--reason", "prueba"
        )
        assert discarded.returncode == 0
        refused = office.cli("invoices", "accept", str(rows["propia.xml"][0]), "--reason", "x")
        assert refused.returncode == 1
        assert f"la factura #{rows['propia.xml'][0]} está descartada" in refused.stderr
        again = office.cli("reprocess", str(rows["propia.xml"][0]), "--reason", "reglas nuevas")
        assert again.returncode == 0, again.stderr
        wait_until(
            lambda: (
                office.rows(f"SELECT state FROM invoices WHERE id = {rows['propia.xml'][0]}")
                == [("checked",)]
            ),
            30,
            "reprocessed",
        )
        text = office.cli("invoices", "list").stdout  # in Spanish, reports.language's default
        assert "ajena.xml" in text and "revisada" in text
        assert office.cli("invoices", "show", "999").returncode == 1
    finally:
        office.kill()


@pytest.mark.slow
def test_the_daemon_pdf_with_embedded_xml_is_the_invoice(office: Office) -> None:
    pdf = with_attachments(text_pdf(["Factura"]), {"fe.xml": invoice(8)})
    drop(office.inbox, "con xml.pdf", pdf)
    [(_, state, _)] = office.settled(1)
    assert state == "checked"


@pytest.mark.slow
def test_copied_samples_end_where_a_person_expects(office: Office) -> None:
    for sample in sorted(SAMPLES.glob("*/*.xml")):
        shutil.copy(sample, office.inbox / sample.name)
    rows = {name: state for _, state, name in office.settled(12)}
    assert rows["siigo-blindacces-FV7.xml"] == "checked"
    assert rows["cfdi-expresiones__cfdi40-real.xml"] == "checked"  # a warning only
    assert rows["satcfdi__cfdv40-min.xml"] == "rejected"  # unstamped test example


@pytest.mark.slow
def test_the_same_invoice_as_xml_zip_and_pdf_at_once(office: Office) -> None:
    """Taken by different workers at the same moment: one stands, the rest follow it."""
    data = invoice(11)
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("fe.xml", data)
    printed = text_pdf(["Factura electrónica de venta FE1001", f"CUFE: {cufe(11)}"])
    staging = office.root / "staging"
    staging.mkdir()
    for name, content in (("a.xml", data), ("b.zip", package.getvalue()), ("c.pdf", printed)):
        (staging / name).write_bytes(content)
    for path in staging.iterdir():
        path.rename(office.inbox / path.name)
    rows = {name: state for _, state, name in office.settled(3)}
    assert sorted(rows.values()) == ["checked", "duplicate", "linked"]
    assert rows["c.pdf"] == "linked"


@pytest.mark.slow
def test_a_zip_with_a_good_and_a_bad_invoice_is_archived_with_the_reason_for_the_bad(
    office: Office,
) -> None:
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("buena.xml", invoice(14))
        archive.writestr("mala.xml", invoice(15, prepaid="5.00", override={"total": "1.00"}))
    drop(office.inbox, "paquete.zip", package.getvalue())
    rows = office.settled(2)
    assert sorted(state for _, state, _ in rows) == ["checked", "rejected"]
    archived = office.files("archive")
    assert [p.name.split("-", 1)[1] for p in archived] == ["paquete.zip", "paquete.zip.motivo.txt"]
    reason = archived[1].read_text(encoding="utf-8")
    assert "paquete.zip (mala.xml)" in reason and "buena.xml" not in reason
    assert "factura rechazada" in reason and "invoice rejected" in reason
    assert not office.files("rejected")


@pytest.mark.slow
def test_reprocessing_an_original_keeps_it_the_original(office: Office) -> None:
    drop(office.inbox, "original.xml", invoice(12))
    office.settled(1)
    drop(office.inbox, "copia.xml", invoice(12))
    rows = {name: (id_, state) for id_, state, name in office.settled(2)}
    assert rows["copia.xml"][1] == "duplicate"
    assert office.cli("reprocess", str(rows["original.xml"][0])).returncode == 0
    wait_until(
        lambda: (
            office.rows("SELECT state FROM invoices ORDER BY id") == [("checked",), ("duplicate",)]
        ),
        30,
        "reprocessed",
    )
    assert len(office.files("archive")) == 1


@pytest.mark.slow
def test_worker_processes_die_with_the_daemon(tmp_path: Path) -> None:
    office = Office(tmp_path)
    office.start()
    drop(office.inbox, "f.xml", invoice(13))
    office.settled(1)  # parsed in a worker process
    assert office.daemon is not None
    pid = office.daemon.proc.pid
    children = {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }
    assert children, "the parse ran in a worker process"
    office.daemon.proc.kill()
    office.daemon.proc.wait(30)
    office.daemon = None
    wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 30, "workers gone")
    office.start()  # nothing holds the lock or the port
    try:
        drop(office.inbox, "g.xml", invoice(14))
        assert len(office.settled(2)) == 2
    finally:
        office.kill()
