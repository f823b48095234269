"""What an alert says to a person, in Spanish or English: a subject line and a short text that
names the invoice (or the queue, pool, authority, certificate) and says what to do.

Alerts are stored as data (store/compliance: a code and its parameters); they are worded here,
where they are read: `facturasd alerts`, the notifications, the daily report. The words an
authority or Alegra said (`said`, `alarm`) are kept as recorded, in English. A code this
version does not know, or parameters a template does not find, give a plain line with the
code and the parameters: an alert is never lost for want of words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facturasd import wording
from facturasd.store.compliance import Alert
from facturasd.wording import Language

# Archive paths a message names, of the first 20 the archive check gives.
FILES_SHOWN = 3


@dataclass(frozen=True)
class Said:
    subject: str
    text: str


# code → (subject, text); the text ends with what to do. CERTIFICATE-EXPIRED is the
# CERTIFICATE-EXPIRING condition once critical (the certificate has ended).
_WORDS: dict[Language, dict[str, tuple[str, str]]] = {
    "es": {
        "SUPPLIER-EFOS": (
            "Proveedor en la lista EFOS del SAT: {invoice}",
            "El SAT pone al emisor de {invoice} en la lista de operaciones presuntamente "
            "inexistentes (EFOS): {alarm}. Qué hacer: no pague ni deduzca esta factura hasta "
            "que su contador revise al proveedor.",
        ),
        "SAT-INVALID": (
            "El SAT no da por válido {invoice}",
            "El SAT responde que el CFDI {invoice} no es válido (cancelado o inexistente): "
            "{said}. Queda fallida y no se contabiliza. Qué hacer: no la pague; pida al "
            "proveedor un CFDI vigente.",
        ),
        "DIAN-INVALID": (
            "La DIAN no da por válida {invoice}",
            "La DIAN rechaza la factura electrónica {invoice}: {said}. Queda fallida y no se "
            "contabiliza. Qué hacer: no la pague; pida al proveedor que la emita de nuevo.",
        ),
        "NOT-FOUND": (
            "La autoridad no encuentra {invoice}",
            "Tras {times} consultas, la autoridad tributaria no encuentra {invoice}: {said}. "
            "Queda fallida. Qué hacer: confirme con el proveedor que la emitió y la "
            "transmitió; luego ejecute {retry}.",
        ),
        "REFUSED": (
            "La autoridad rechazó la consulta de {invoice}",
            "La autoridad tributaria rechazó {times} veces la consulta de {invoice}: {said}. "
            "Queda fallida. Qué hacer: revise la configuración y el certificado "
            "([authorities], facturasd check-config); luego ejecute {retry}.",
        ),
        "ALEGRA-ACCOUNT": (
            "Alegra no deja contabilizar con {user}",
            "La contabilización en Alegra está en pausa para {user}: {said}. Las facturas "
            "esperan en cola; no se pierde ninguna. Qué hacer: revise las credenciales y el "
            "plan de la cuenta en Alegra; se reanuda sola cuando Alegra acepte.",
        ),
        "ALEGRA-ATTACHMENT": (
            "{file} no se adjuntó en Alegra ({invoice})",
            "{invoice} está contabilizada en Alegra, pero {file} no se adjuntó: {said}. Qué "
            "hacer: adjúntelo a mano en Alegra (está en el archivo de facturasd).",
        ),
        "SAT-CANCELLED-AFTER-BOOKING": (
            "CFDI cancelado después de contabilizarlo: {invoice}",
            "El SAT dice ahora que {invoice} está cancelado, y ya es la factura de proveedor "
            "{bill} en Alegra: {said}. Qué hacer: anule o ajuste esa factura en Alegra y "
            "hable con el proveedor antes de pagarla.",
        ),
        "ARCHIVE-DAMAGED": (
            "Archivo legal dañado: faltan {missing}, cambiados {changed}",
            "La revisión del archivo encontró {missing} archivo(s) que faltan y {changed} "
            "cambiado(s) desde que se recibieron: {files}. Es la copia legal de cinco años. "
            "Qué hacer: restáurelos desde una copia del archivo y averigüe qué los tocó.",
        ),
        "SCHEDULE-FAILED": (
            "Falló la tarea programada {task}",
            "La tarea {task} no terminó: {said}. Se intenta de nuevo a su próxima hora. Qué "
            "hacer: si se repite, revise el registro (journalctl -u facturasd).",
        ),
        "QUEUE-BACKLOG": (
            "Cola {queue}: {ready} trabajos esperando",
            "La cola {queue} tiene {ready} trabajos listos sin atender (umbral {threshold}). "
            "Qué hacer: mire /health y el registro: un servicio externo lento o caído, o "
            "pocos trabajadores ([workers]); la cola se vacía sola cuando se resuelve.",
        ),
        "NO-WORKER": (
            "Sin trabajadores en el grupo {pool}",
            "Ningún trabajador del grupo {pool} está vivo y {waiting} trabajos esperan. Qué "
            "hacer: reinicie el servicio (systemctl restart facturasd) y revise el registro.",
        ),
        "CACHE-HIT-RATE": (
            "Caché de Alegra: solo {rate} de aciertos",
            "Solo el {rate} de las consultas a la caché de Alegra acierta (mínimo "
            "{threshold}): se gastan peticiones a Alegra. Qué hacer: compruebe que Redis "
            "responde y que los TTL de [cache] no son demasiado cortos.",
        ),
        "ERROR-RATE": (
            "Falla el {rate} de los trabajos del grupo {pool}",
            "El {rate} de los trabajos recientes del grupo {pool} falla (máximo {threshold}). "
            "Qué hacer: facturasd jobs --state dead y el registro dicen por qué.",
        ),
        "AUTHORITY-FAILURES": (
            "{authority}: {rate} de consultas sin respuesta",
            "El {rate} de las consultas recientes a {authority} no tuvo respuesta o fue "
            "rechazada (máximo {threshold}). Las facturas esperan sin confirmar y se consultan "
            "de nuevo solas. Qué hacer: si {authority} está caída, nada; si no, revise la "
            "conexión y el certificado.",
        ),
        "CERTIFICATE-EXPIRING": (
            "El certificado DIAN de {company} vence el {expires}",
            "El certificado con el que se consulta a la DIAN ({company}) vence el {expires}. "
            "Qué hacer: renuévelo y configure el nuevo en authorities.dian antes de esa "
            "fecha.",
        ),
        "CERTIFICATE-EXPIRED": (
            "El certificado DIAN de {company} venció el {expires}",
            "El certificado de la DIAN ({company}) venció el {expires}: no se consulta a la "
            "DIAN y las facturas colombianas esperan. Qué hacer: configure uno vigente en "
            "authorities.dian y reinicie el servicio.",
        ),
        "DISK-FULL": (
            "Disco casi lleno: {free_mb} MB libres",
            "Quedan {free_mb} MB libres donde está el registro de facturasd (mínimo "
            "{threshold_mb} MB); lleno, no se registra ninguna factura. Qué hacer: libere "
            "espacio o amplíe el disco.",
        ),
        "BACKUP-STALE": (
            "Sin copia reciente del registro",
            "La copia más reciente del registro: {newest} (máximo {max_age_days} días). Qué "
            "hacer: revise la tarea de copia en el registro del servicio y el espacio libre; "
            "facturasd backup DESTINO hace una ahora.",
        ),
    },
    "en": {
        "SUPPLIER-EFOS": (
            "Supplier on SAT's EFOS list: {invoice}",
            "SAT lists the issuer of {invoice} among taxpayers with presumed non-existent "
            "operations (EFOS): {alarm}. What to do: do not pay or deduct this invoice until "
            "your accountant has reviewed the supplier.",
        ),
        "SAT-INVALID": (
            "SAT does not accept {invoice}",
            "SAT answers that CFDI {invoice} is not valid (cancelled or unknown): {said}. It is "
            "failed and not booked. What to do: do not pay it; ask the supplier for a valid "
            "CFDI.",
        ),
        "DIAN-INVALID": (
            "DIAN does not accept {invoice}",
            "DIAN rejects the e-invoice {invoice}: {said}. It is failed and not booked. What "
            "to do: do not pay it; ask the supplier to issue it again.",
        ),
        "NOT-FOUND": (
            "The tax authority cannot find {invoice}",
            "After {times} questions the tax authority still cannot find {invoice}: {said}. "
            "It is failed. What to do: check with the supplier that it was issued and sent; "
            "then run {retry}.",
        ),
        "REFUSED": (
            "The tax authority refused the question about {invoice}",
            "The tax authority refused the question about {invoice} {times} times: {said}. It "
            "is failed. What to do: check the settings and the certificate ([authorities], "
            "facturasd check-config); then run {retry}.",
        ),
        "ALEGRA-ACCOUNT": (
            "Alegra does not let {user} book",
            "Booking in Alegra is paused for {user}: {said}. The invoices wait in their queue; "
            "none is lost. What to do: check the account's credentials and plan in Alegra; "
            "booking resumes by itself once Alegra accepts.",
        ),
        "ALEGRA-ATTACHMENT": (
            "{file} not attached in Alegra ({invoice})",
            "{invoice} is booked in Alegra, but {file} was not attached: {said}. What to do: "
            "attach it by hand in Alegra (it is in facturasd's archive).",
        ),
        "SAT-CANCELLED-AFTER-BOOKING": (
            "CFDI cancelled after it was booked: {invoice}",
            "SAT now says {invoice} is cancelled, and it is already supplier bill {bill} in "
            "Alegra: {said}. What to do: void or adjust that bill in Alegra and talk to the "
            "supplier before paying it.",
        ),
        "ARCHIVE-DAMAGED": (
            "Legal archive damaged: {missing} missing, {changed} changed",
            "The archive check found {missing} file(s) missing and {changed} no longer as "
            "received: {files}. It is the five-year legal copy. What to do: restore them from "
            "a backup of the archive and find out what touched them.",
        ),
        "SCHEDULE-FAILED": (
            "Scheduled task {task} failed",
            "Task {task} did not finish: {said}. It runs again at its next time. What to do: "
            "if it happens again, read the log (journalctl -u facturasd).",
        ),
        "QUEUE-BACKLOG": (
            "Queue {queue}: {ready} jobs waiting",
            "Queue {queue} has {ready} jobs ready and not taken (threshold {threshold}). What "
            "to do: look at /health and the log: a slow or down upstream, or too few workers "
            "([workers]); the queue drains by itself once that is fixed.",
        ),
        "NO-WORKER": (
            "No workers in pool {pool}",
            "No worker of pool {pool} is alive and {waiting} jobs wait. What to do: restart "
            "the service (systemctl restart facturasd) and read the log.",
        ),
        "CACHE-HIT-RATE": (
            "Alegra cache: only {rate} hits",
            "Only {rate} of the Alegra cache's look-ups hit (at least {threshold} expected): "
            "requests to Alegra are spent. What to do: check that Redis answers and that the "
            "TTLs in [cache] are not too short.",
        ),
        "ERROR-RATE": (
            "{rate} of pool {pool}'s jobs failing",
            "{rate} of pool {pool}'s recent jobs fail (at most {threshold} expected). What to "
            "do: facturasd jobs --state dead and the log say why.",
        ),
        "AUTHORITY-FAILURES": (
            "{authority}: {rate} of questions unanswered",
            "{rate} of the recent questions to {authority} got no answer or were refused (at "
            "most {threshold} expected). The invoices wait unconfirmed and are asked again by "
            "themselves. What to do: if {authority} is down, nothing; else check the "
            "connection and the certificate.",
        ),
        "CERTIFICATE-EXPIRING": (
            "The DIAN certificate of {company} expires on {expires}",
            "The certificate DIAN is asked with ({company}) expires on {expires}. What to do: "
            "renew it and configure the new one in authorities.dian before then.",
        ),
        "CERTIFICATE-EXPIRED": (
            "The DIAN certificate of {company} expired on {expires}",
            "The DIAN certificate ({company}) expired on {expires}: DIAN is not asked and the "
            "Colombian invoices wait. What to do: configure a valid one in authorities.dian "
            "and restart the service.",
        ),
        "DISK-FULL": (
            "Disk nearly full: {free_mb} MB free",
            "{free_mb} MB are free where facturasd's ledger is (at least {threshold_mb} MB "
            "expected); once full, no invoice is recorded. What to do: free space or grow the "
            "disk.",
        ),
        "BACKUP-STALE": (
            "No recent backup of the ledger",
            "The newest backup of the ledger: {newest} (at most {max_age_days} days old "
            "expected). What to do: look for the backup task in the service's log and check "
            "the free space; facturasd backup DEST makes one now.",
        ),
    },
}

# A condition that clears: what is true again.
_RESOLVED: dict[Language, dict[str, str]] = {
    "es": {
        "QUEUE-BACKLOG": "La cola {queue} vuelve a tener {threshold} trabajos listos o menos.",
        "NO-WORKER": "El grupo {pool} vuelve a tener trabajadores, o nada que esperar.",
        "CACHE-HIT-RATE": "La caché de Alegra vuelve a acertar al menos el {threshold}.",
        "ERROR-RATE": "Los trabajos de {pool} vuelven a fallar el {threshold} o menos.",
        "AUTHORITY-FAILURES": "{authority} vuelve a responder.",
        "CERTIFICATE-EXPIRING": "El certificado DIAN de {company} ya no está por vencer.",
        "DISK-FULL": "Vuelve a haber al menos {threshold_mb} MB libres.",
        "BACKUP-STALE": "Hay de nuevo una copia reciente del registro.",
    },
    "en": {
        "QUEUE-BACKLOG": "Queue {queue} is back to {threshold} ready jobs or fewer.",
        "NO-WORKER": "Pool {pool} has workers again, or nothing waiting.",
        "CACHE-HIT-RATE": "The Alegra cache hits at least {threshold} again.",
        "ERROR-RATE": "Pool {pool}'s jobs fail {threshold} or less again.",
        "AUTHORITY-FAILURES": "{authority} answers again.",
        "CERTIFICATE-EXPIRING": "The DIAN certificate of {company} no longer expires soon.",
        "DISK-FULL": "At least {threshold_mb} MB are free again.",
        "BACKUP-STALE": "There is a recent backup of the ledger again.",
    },
}

# The subject's head: the severity, and the status when it is not the first word.
_STATUS: dict[Language, dict[str, str]] = {
    "es": {"firing": "", "repeat": ", sigue", "resolved": "resuelto"},
    "en": {"firing": "", "repeat": ", still", "resolved": "resolved"},
}
# A resolved alert's text ends with what its condition's last alert said.
_WAS: dict[Language, str] = {"es": "Última alerta: {subject}.", "en": "Last alert: {subject}."}
_OTHER: dict[Language, dict[str, str]] = {
    "es": {
        "all companies": "todas las empresas",
        "no backup": "ninguna",
        "no bill": "(sin número)",
        "more": "y {n} más",
        "retry": "facturasd retry {id}",
        "retry all": "facturasd retry --failed",
    },
    "en": {
        "all companies": "all companies",
        "no backup": "none",
        "no bill": "(no id)",
        "more": "and {n} more",
        "retry": "facturasd retry {id}",
        "retry all": "facturasd retry --failed",
    },
}
# Codes whose `rate` and `threshold` are shares (0..1), written as percentages.
_RATES = {"CACHE-HIT-RATE", "ERROR-RATE", "AUTHORITY-FAILURES"}


def describe(alert: Alert, lang: Language) -> Said:
    """`alert` as a person reads it in `lang`."""
    code = alert.code
    if code == "CERTIFICATE-EXPIRING" and alert.severity == "critical":
        code = "CERTIFICATE-EXPIRED"
    words = _WORDS[lang].get(code)
    head = _head(alert, lang)
    try:
        if words is None:
            raise KeyError(code)
        values = _values(alert, lang)
        subject, text = (w.format_map(values) for w in words)
        if alert.status == "resolved":
            now = _RESOLVED[lang][alert.code].format_map(values)
            subject, text = now.removesuffix("."), f"{now} {_WAS[lang].format(subject=subject)}"
    except (KeyError, ValueError, TypeError, AttributeError):
        shown = "; ".join(f"{k}: {v}" for k, v in sorted(alert.params.items()))
        return Said(f"{head} {alert.code}", f"{alert.code}: {shown}" if shown else alert.code)
    return Said(f"{head} {subject}", text)


def _head(alert: Alert, lang: Language) -> str:
    severity = wording.SEVERITIES[lang].get(alert.severity, alert.severity)
    status = _STATUS[lang].get(alert.status, f", {alert.status}")
    if alert.status == "resolved":
        return f"[{status}]"
    return f"[{severity}{status}]"


def _values(alert: Alert, lang: Language) -> dict[str, str]:
    """The parameters as the templates write them; only those the alert has (a template
    that needs another raises KeyError)."""
    other = _OTHER[lang]
    shares = {"rate", "threshold"} if alert.code in _RATES else set()
    values = {
        key: _percent(float(value), lang) if key in shares else _plain(value, lang)
        for key, value in alert.params.items()
    }
    if "invoice" not in values and alert.invoice_id is not None:
        values["invoice"] = f"#{alert.invoice_id}"
    values["retry"] = (
        other["retry"].format(id=alert.invoice_id)
        if alert.invoice_id is not None
        else other["retry all"]
    )
    params: Mapping[str, Any] = alert.params
    if "company" in params and params["company"] is None:
        values["company"] = other["all companies"]
    if "bill" in params and params["bill"] is None:
        values["bill"] = other["no bill"]
    if "newest" in params:
        newest = params["newest"]
        values["newest"] = (
            other["no backup"]
            if newest is None
            else f"{datetime.fromisoformat(newest):%Y-%m-%d %H:%M}"
        )
    if "authority" in params:
        values["authority"] = str(params["authority"]).upper()
    if "files" in params:
        files = [str(f) for f in params["files"]]
        shown = ", ".join(files[:FILES_SHOWN])
        more = int(params.get("missing", 0)) + int(params.get("changed", 0))
        more -= len(files[:FILES_SHOWN])
        values["files"] = f"{shown} {other['more'].format(n=more)}" if more > 0 else shown
    return values


def _plain(value: Any, lang: Language) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return wording.count(value, lang)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _percent(share: float, lang: Language) -> str:
    """A share (0..1) as a percentage: "12,5 %" in Spanish (RAE), "12.5%" in English."""
    number = f"{share * 100:.1f}".removesuffix(".0")
    if lang == "es":
        return number.replace(".", ",") + "\u00a0%"
    return number + "%"
