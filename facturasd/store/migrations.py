"""Forward-only schema migrations; version N is MIGRATIONS[N - 1] and is never edited.

To change the schema, append a migration. The daemon copies the database to
`<state_dir>/backups/` before it applies any migration to an existing file.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: ledger, event history, queue, scheduler state, key-value.
    """
    CREATE TABLE invoices (
        id            INTEGER PRIMARY KEY,
        sha256        TEXT NOT NULL UNIQUE,
        uuid          TEXT,
        company       TEXT,
        country       TEXT,
        kind          TEXT,
        number        TEXT,
        issuer_tax_id TEXT,
        issuer_name   TEXT,
        receiver_tax_id TEXT,
        issued_at     TEXT,
        currency      TEXT,
        total         TEXT,
        state         TEXT NOT NULL,
        compliance    TEXT NOT NULL DEFAULT 'PENDING',
        original_name TEXT NOT NULL,
        stored_path   TEXT,
        document      TEXT,
        received_at   REAL NOT NULL,
        updated_at    REAL NOT NULL
    );
    CREATE INDEX invoices_uuid ON invoices(uuid);
    CREATE INDEX invoices_state ON invoices(state);

    CREATE TABLE invoice_events (
        id         INTEGER PRIMARY KEY,
        invoice_id INTEGER NOT NULL REFERENCES invoices(id),
        at         REAL NOT NULL,
        kind       TEXT NOT NULL,
        detail     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX invoice_events_invoice ON invoice_events(invoice_id, at);
    CREATE TRIGGER invoice_events_no_update BEFORE UPDATE ON invoice_events
    BEGIN SELECT RAISE(ABORT, 'invoice_events is append-only'); END;
    CREATE TRIGGER invoice_events_no_delete BEFORE DELETE ON invoice_events
    BEGIN SELECT RAISE(ABORT, 'invoice_events is append-only'); END;

    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY,
        queue        TEXT NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        dedupe_key   TEXT,
        priority     INTEGER NOT NULL DEFAULT 0,
        state        TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'dead')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_at       REAL NOT NULL,
        lease_token  TEXT,
        lease_until  REAL,
        last_error   TEXT,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        finished_at  REAL
    );
    CREATE INDEX jobs_ready ON jobs(queue, priority DESC, run_at, id) WHERE state = 'queued';
    CREATE INDEX jobs_leases ON jobs(lease_until) WHERE state = 'running';
    CREATE INDEX jobs_state ON jobs(queue, state);
    CREATE UNIQUE INDEX jobs_live_dedupe ON jobs(dedupe_key)
        WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

    CREATE TABLE scheduler_runs (
        task     TEXT PRIMARY KEY,
        last_run REAL NOT NULL,
        last_ok  INTEGER NOT NULL,
        detail   TEXT
    );

    CREATE TABLE kv (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 2: the ledger as the inbox fills it. Version 1's two tables were never written by any
    # release (nothing ingested files before this version), so they are replaced, not altered:
    # one row per document received (a re-sent file is a row of its own, a `duplicate`, so
    # sha256 is no longer unique), where its file is, and what the checks found.
    """
    DROP TABLE invoice_events;
    DROP TABLE invoices;

    CREATE TABLE invoices (
        id              INTEGER PRIMARY KEY,
        sha256          TEXT NOT NULL,
        original_name   TEXT NOT NULL,
        inbox_path      TEXT NOT NULL,
        member          TEXT,
        path            TEXT NOT NULL,
        archived        INTEGER NOT NULL DEFAULT 0,
        company         TEXT,
        state           TEXT NOT NULL,
        compliance      TEXT NOT NULL DEFAULT 'PENDING',
        format          TEXT,
        uuid            TEXT,
        country         TEXT,
        kind            TEXT,
        number          TEXT,
        issuer_tax_id   TEXT,
        issuer_name     TEXT,
        receiver_tax_id TEXT,
        issued_at       TEXT,
        currency        TEXT,
        total           TEXT,
        verdict         TEXT,
        score           REAL,
        inspection      TEXT,
        related_to      INTEGER REFERENCES invoices(id),
        received_at     REAL NOT NULL,
        updated_at      REAL NOT NULL
    );
    CREATE INDEX invoices_sha256 ON invoices(sha256);
    CREATE INDEX invoices_uuid ON invoices(uuid);
    CREATE INDEX invoices_state ON invoices(state);
    CREATE INDEX invoices_received ON invoices(received_at);
    CREATE INDEX invoices_unarchived ON invoices(id) WHERE archived = 0;

    CREATE TABLE invoice_events (
        id         INTEGER PRIMARY KEY,
        invoice_id INTEGER NOT NULL REFERENCES invoices(id),
        at         REAL NOT NULL,
        state      TEXT,
        actor      TEXT NOT NULL,
        reason     TEXT NOT NULL
    );
    CREATE INDEX invoice_events_invoice ON invoice_events(invoice_id, at);
    CREATE TRIGGER invoice_events_no_update BEFORE UPDATE ON invoice_events
    BEGIN SELECT RAISE(ABORT, 'invoice_events is append-only'); END;
    CREATE TRIGGER invoice_events_no_delete BEFORE DELETE ON invoice_events
    BEGIN SELECT RAISE(ABORT, 'invoice_events is append-only'); END;
    """,
    # 3: the tax authority's word. Each attempt to get it (asked online, or read from the
    # container's evidence), the alerts that need a person (the notifications deliver them),
    # and the compliance status beside the state in the event history.
    """
    CREATE TABLE authority_attempts (
        id         INTEGER PRIMARY KEY,
        invoice_id INTEGER NOT NULL REFERENCES invoices(id),
        at         REAL NOT NULL,
        authority  TEXT NOT NULL,
        endpoint   TEXT NOT NULL,
        source     TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        status     TEXT,
        detail     TEXT,
        latency    REAL,
        fields     TEXT
    );
    CREATE INDEX authority_attempts_invoice ON authority_attempts(invoice_id, id);
    CREATE INDEX authority_attempts_at ON authority_attempts(authority, at);

    CREATE TABLE alerts (
        id         INTEGER PRIMARY KEY,
        at         REAL NOT NULL,
        invoice_id INTEGER REFERENCES invoices(id),
        severity   TEXT NOT NULL CHECK (severity IN ('critical', 'warning')),
        code       TEXT NOT NULL,
        params     TEXT NOT NULL DEFAULT '{}',
        sent_at    REAL
    );
    CREATE INDEX alerts_unsent ON alerts(id) WHERE sent_at IS NULL;

    ALTER TABLE invoice_events ADD COLUMN compliance TEXT;
    -- Attempts up to this id no longer count against the retries (a person asked again).
    ALTER TABLE invoices ADD COLUMN attempts_from INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX invoices_compliance ON invoices(compliance);
    """,
    # 4: booking in Alegra. The bill an invoice became, and the booking's own record: the intent
    # written before a bill is posted (so a crash between the POST and its commit is looked up,
    # never posted again), and how the last try ended.
    """
    ALTER TABLE invoices ADD COLUMN alegra_bill_id TEXT;

    CREATE TABLE bookings (
        invoice_id INTEGER PRIMARY KEY REFERENCES invoices(id),
        account    TEXT NOT NULL,
        intent_at  REAL,
        booked_at  REAL,
        attached   INTEGER NOT NULL DEFAULT 0,
        outcome    TEXT,
        detail     TEXT
    );
    CREATE INDEX bookings_booked ON bookings(account, booked_at);
    """,
    # 5: alerts about conditions (a backlog, a failing upstream, a full disk), besides those about
    # events: each condition that holds has a row in `conditions`; its alerts are said when it
    # starts to hold (`firing`), again after the cooldown while it holds (`repeat`), and when it
    # clears (`resolved`). An event's alert is `firing` and has no condition.
    """
    ALTER TABLE alerts ADD COLUMN status TEXT NOT NULL DEFAULT 'firing'
        CHECK (status IN ('firing', 'repeat', 'resolved'));
    ALTER TABLE alerts ADD COLUMN condition TEXT;
    CREATE INDEX alerts_at ON alerts(at);

    CREATE TABLE conditions (
        key      TEXT PRIMARY KEY,
        code     TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('critical', 'warning')),
        params   TEXT NOT NULL DEFAULT '{}',
        since    REAL NOT NULL,
        said_at  REAL NOT NULL
    );
    """,
    # 6: the audit trail: each action a person or a system took through the CLI or the HTTP
    # API (who, when, by which way, what, on what, why), written in the action's own
    # transaction; append-only, like the invoices' history.
    """
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        via     TEXT NOT NULL CHECK (via IN ('api', 'cli')),
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        reason  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    """,
)
