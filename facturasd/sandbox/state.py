"""What the sandbox servers know and count. One `Sandbox` per application, kept in memory."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from cryptography import x509

from facturasd.formats.model import Document

SERVICES = ("sat", "dian", "alegra")
# The local Alegra account's credentials unless `facturasd sandbox` is told others: public,
# like everything in the sandbox.
ALEGRA_USER = "sandbox@facturasd.local"
ALEGRA_TOKEN = "sandbox"  # noqa: S105
ALEGRA_RATE = 150  # requests a window, as Alegra's plans allow
WINDOW = 60.0  # seconds: Alegra counts requests a minute


@dataclass
class SatRecord:
    """A CFDI as SAT knows it: the expression's parts and the status SAT gives."""

    uuid: str  # upper case
    re: str
    rr: str
    tt: Decimal
    estado: str = "Vigente"  # Vigente, Cancelado, No Encontrado
    efos: str = "200"
    cancelable: str = "Cancelable sin aceptación"
    cancelacion: str = ""  # EstatusCancelacion


@dataclass
class DianRecord:
    """A DIAN document as GetStatus reports it, and its XML as GetXmlByDocumentKey gives it
    (None: known without it)."""

    cufe: str  # lower case
    number: str | None = None
    status_code: str = "00"  # 00, 66, 98, 99
    is_valid: bool = True
    errors: list[str] = field(default_factory=list)
    xml: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Fault:
    """What `POST /_admin/faults` sets for one service: a share of its requests (of one
    `endpoint`, "POST /bills", if given) answered with `status` (and `Retry-After`), or never
    answered (`timeout`), or answered only `hold_ms` after the service acted (a client that
    gives up meanwhile never learns what happened), after `latency_ms`. With `code` the
    answer is an Alegra error body `{"code", "message"}`; with `act` the service acts first
    (Alegra's 3051: the bill was made, the answer says it failed)."""

    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    timeout: bool = False
    retry_after: float | None = None
    hold_ms: int = 0
    endpoint: str | None = None
    code: int | None = None
    act: bool = False

    def applies(self, method: str, path: str) -> bool:
        """Whether a request is one the fault is for: any, or one of its endpoint (the
        method, and the end of the path)."""
        if self.endpoint is None:
            return True
        wanted_method, _, wanted_path = self.endpoint.partition(" ")
        return method == wanted_method.upper() and path.rstrip("/").endswith(wanted_path)

    @classmethod
    def of(cls, body: dict[str, Any]) -> tuple[str, Fault]:
        """(service, fault) from the endpoint's JSON; ValueError naming what is wrong."""
        service = body.get("service")
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
        rate = float(body.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        status = body.get("status")
        if status is not None and not 100 <= int(status) <= 599:
            raise ValueError(f"status must be an HTTP status, not {status!r}")
        retry_after = body.get("retry_after")
        endpoint = body.get("endpoint")
        if endpoint is not None and not (
            isinstance(endpoint, str) and " /" in endpoint and endpoint.split(" ")[0].isalpha()
        ):
            raise ValueError(f'endpoint must be like "POST /bills", not {endpoint!r}')
        return service, cls(
            status=int(status) if status is not None else None,
            rate=rate,
            latency_ms=max(0, int(body.get("latency_ms", 0))),
            timeout=bool(body.get("timeout", False)),
            retry_after=float(retry_after) if retry_after is not None else None,
            hold_ms=max(0, int(body.get("hold_ms", 0))),
            endpoint=endpoint,
            code=int(body["code"]) if body.get("code") is not None else None,
            act=bool(body.get("act", False)),
        )


@dataclass
class Window:
    """One user's rate-limit window: when it started (Alegra.clock) and what it served."""

    start: float
    served: int = 0


# (id, name, type, parent): PUC codes as ids, so an account can be named by its code.
_CHART = (
    ("1", "Activo", "asset", None),
    ("11", "Disponible", "asset", "1"),
    ("1105", "Caja", "asset", "11"),
    ("1110", "Bancos", "asset", "11"),
    ("2", "Pasivo", "liability", None),
    ("22", "Proveedores", "liability", "2"),
    ("2205", "Proveedores nacionales", "liability", "22"),
    ("23", "Cuentas por pagar", "liability", "2"),
    ("2365", "Retención en la fuente", "liability", "23"),
    ("2367", "Impuesto a las ventas retenido", "liability", "23"),
    ("2368", "Impuesto de industria y comercio retenido", "liability", "23"),
    ("24", "Impuestos, gravámenes y tasas", "liability", "2"),
    ("2408", "Impuesto sobre las ventas por pagar", "liability", "24"),
    ("3", "Patrimonio", "equity", None),
    ("3105", "Capital suscrito y pagado", "equity", "3"),
    ("4", "Ingresos", "income", None),
    ("41", "Operacionales", "income", "4"),
    ("4135", "Comercio al por mayor y al por menor", "income", "41"),
    ("5", "Gastos", "expense", None),
    ("51", "Operacionales de administración", "expense", "5"),
    ("5105", "Compras y gastos generales", "expense", "51"),
    ("5135", "Servicios", "expense", "51"),
    ("5140", "Gastos legales", "expense", "51"),
    ("5145", "Mantenimiento y reparaciones", "expense", "51"),
    ("5195", "Diversos", "expense", "51"),
    ("6", "Costos de venta", "expense", None),
    ("61", "Costo de ventas", "expense", "6"),
    ("6135", "Compras de mercancías", "expense", "61"),
)
_TAXES = (
    ("IVA 19%", "19.00", "IVA"),
    ("IVA 5%", "5.00", "IVA"),
    ("IVA 0%", "0.00", "IVA"),
    ("INC 8%", "8.00", "ICO"),
    ("IVA 16% (México)", "16.00", "IVA"),
    ("IVA 8% (México, frontera)", "8.00", "IVA"),
)
_RETENTIONS = (
    *(
        (f"ReteFuente {float(p):g}%", p, "FUENTE")
        for p in ("0.10", "1.00", "2.00", "2.50", "3.50", "4.00", "6.00", "10.00", "11.00")
    ),
    ("ReteIVA 15%", "15.00", "IVA"),
    *((f"ReteICA {p}%", p, "ICA") for p in ("0.414", "0.69", "0.966", "1.104", "1.38")),
    ("ISR 1.25%", "1.25", "ISR"),
    ("ISR 10%", "10.00", "ISR"),
    ("IVA retenido 4%", "4.00", "IVA"),
    ("IVA retenido 10.6667%", "10.6667", "IVA"),
)


def _numbered(objects: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`objects` by the ids "1", "2", … given in their order."""
    return {str(n): {"id": str(n), **obj} for n, obj in enumerate(objects, 1)}


@dataclass
class Alegra:
    """The local Alegra account: its collections as the API shows them (JSON values; money as
    numbers already rounded), the ids issued, the block set by the admin, and what it counted.
    Made seeded (`seed`) unless given its records; alegra.py serves it and writes it to
    the snapshot."""

    user: str = ALEGRA_USER
    token: str = ALEGRA_TOKEN
    rate: int = ALEGRA_RATE  # requests a user may make in one window
    window: float = WINDOW  # seconds
    # collection ("contacts", "bills", "subscriptions" …) -> id -> object
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # collection -> the last id issued (ids grow per collection, even past deleted ones)
    last_ids: dict[str, int] = field(default_factory=dict)
    block: int | None = None  # 900 (plan limit), 907 (read-only plan) or None
    # The Colombian documents `POST /bills/import-by-cufe` knows, by CUFE (lower case).
    documents: dict[str, Document] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    # What the windows are timed by: a test on an injected clock passes its own.
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    limited: int = 0
    peak_per_window: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)  # "delivered", "failed"

    def __post_init__(self) -> None:
        if not self.records:
            self.seed()

    def seed(self) -> None:
        """The account as a new Colombian-Mexican company has it: a chart of accounts, the
        usual taxes and retentions, two items; no contacts, no bills."""
        categories = {
            id_: {"id": id_, "idParent": parent, "name": name, "type": type_, "readOnly": False}
            for id_, name, type_, parent in _CHART
        }
        taxes, retentions = (
            _numbered(
                {"name": name, "percentage": rate, "type": type_, "status": "active"}
                for name, rate, type_ in table
            )
            for table in (_TAXES, _RETENTIONS)
        )
        items = _numbered(
            {
                "name": name,
                "description": "",
                "reference": None,
                "price": [{"idPriceList": "1", "price": 0}],
                "tax": [],
                "status": "active",
                "type": type_,
            }
            for name, type_ in (("Servicio", "service"), ("Producto", "product"))
        )
        self.records = {
            "categories": categories,
            "taxes": taxes,
            "retentions": retentions,
            "items": items,
        }
        self.last_ids = {kind: max(map(int, found)) for kind, found in self.records.items()}

    def stats(self) -> dict[str, Any]:
        return {
            "by_endpoint": dict(self.by_endpoint),
            "limited": self.limited,
            "peak_per_window": self.peak_per_window,
            "webhooks": {key: self.webhooks[key] for key in ("delivered", "failed")},
        }


@dataclass
class Sandbox:
    sat: dict[str, SatRecord] = field(default_factory=dict)
    dian: dict[str, DianRecord] = field(default_factory=dict)
    alegra: Alegra = field(default_factory=Alegra)
    faults: dict[str, Fault] = field(default_factory=dict)
    # The certificates a DIAN request's token must be one of; None: any certificate.
    dian_trust: list[x509.Certificate] | None = None
    # Asked about a document SAT or DIAN does not know, before they say so: it makes the
    # document known if it finds it (`run --sandbox`: in the daemon's ledger).
    lookup: Callable[[str], Awaitable[None]] | None = None
    _counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {service: Counter() for service in SERVICES}
    )

    async def recall(self, uuid: str) -> None:
        """A document not known yet looked for by `lookup`, if there is one."""
        if self.lookup is not None:
            await self.lookup(uuid)

    def count(self, service: str, outcome: str) -> None:
        """One request to `service` and how it ended ("vigente", "00", "fault" …)."""
        self._counts[service][outcome] += 1

    def stats(self) -> dict[str, dict[str, Any]]:
        found = {
            service: {"requests": sum(counts.values()), "by_outcome": dict(counts)}
            for service, counts in self._counts.items()
        }
        found["alegra"].update(self.alegra.stats())
        return found


# The application's Sandbox. Here rather than in server.py: the service handlers read it, and
# server.py imports them.
SANDBOX = web.AppKey("sandbox", Sandbox)
