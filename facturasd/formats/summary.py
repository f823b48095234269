"""`facturasd inspect` without --json: a short summary a person reads, Spanish or English."""

from __future__ import annotations

from facturasd.findings import Language, message
from facturasd.formats.model import Inspection

KINDS = {
    "es": {
        "invoice": "factura",
        "credit_note": "nota crédito",
        "debit_note": "nota débito",
        "support_document": "documento soporte",
        "payment": "complemento de pago",
        "payroll": "nómina",
        "transfer": "traslado",
    },
    "en": {
        "invoice": "invoice",
        "credit_note": "credit note",
        "debit_note": "debit note",
        "support_document": "support document",
        "payment": "payment",
        "payroll": "payroll",
        "transfer": "transfer",
    },
}
VERDICTS = {
    "es": {"ok": "correcta", "warnings": "con advertencias", "rejected": "rechazada"},
    "en": {"ok": "correct", "warnings": "with warnings", "rejected": "rejected"},
}
WORDS = {
    "es": {
        "issuer": "emisor",
        "receiver": "receptor",
        "total": "total",
        "taxes": "impuestos",
        "withholdings": "retenciones",
        "score": "puntaje",
        "pdf": "PDF adjunto",
        "evidence": "DIAN",
        "unread": "no se pudo leer",
    },
    "en": {
        "issuer": "issuer",
        "receiver": "receiver",
        "total": "total",
        "taxes": "taxes",
        "withholdings": "withholdings",
        "score": "score",
        "pdf": "attached PDF",
        "evidence": "DIAN",
        "unread": "could not be read",
    },
}


def render(inspection: Inspection, lang: Language) -> str:
    words = WORDS[lang]
    name = inspection.file + (f" [{inspection.member}]" if inspection.member else "")
    verdict = VERDICTS[lang][inspection.verdict]
    doc = inspection.document
    if doc is None:
        lines = [f"{name}: {words['unread']} — {verdict}"]
    else:
        kind = KINDS[lang][doc.kind] if doc.kind else "PDF"
        lines = [
            f"{name}: {kind} {doc.number or '—'} ({inspection.format}) — {verdict} "
            f"({words['score']} {inspection.score:.2f})",
            f"  {words['issuer']} {_party(doc.issuer.tax_id, doc.issuer.check_digit)} "
            f"{doc.issuer.name or ''} → {words['receiver']} "
            f"{_party(doc.receiver.tax_id, doc.receiver.check_digit)} {doc.receiver.name or ''}",
            f"  {words['total']} {doc.totals.total or '—'} {doc.currency or ''}; "
            f"{words['taxes']} {doc.totals.taxes or '0'}; "
            f"{words['withholdings']} {doc.totals.withholdings or '0'}",
            f"  UUID/CUFE {doc.uuid or '—'}",
        ]
        if doc.authority_evidence:
            evidence = doc.authority_evidence
            lines.append(f"  {words['evidence']}: {evidence.code} {evidence.description or ''}")
        if inspection.attachments:
            lines.append(f"  {words['pdf']}: {', '.join(inspection.attachments)}")
    lines += [
        f"  [{f.severity}] {f.code}: {message(f, lang)} ({f.path})" for f in inspection.findings
    ]
    return "\n".join(line.rstrip() for line in lines)


def _party(tax_id: str | None, check_digit: str | None) -> str:
    return f"{tax_id or '—'}-{check_digit}" if check_digit else tax_id or "—"
