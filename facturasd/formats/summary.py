"""`facturasd inspect` without --json: a short summary a person reads, wholly in Spanish or in
English, amounts as the document's country writes them."""

from __future__ import annotations

from facturasd.findings import Language, located, message
from facturasd.formats.model import Inspection
from facturasd.wording import KINDS, SEVERITIES, VERDICTS, WORDS, amount


def render(inspection: Inspection, lang: Language) -> str:
    words = WORDS[lang]
    name = inspection.file + (f" [{inspection.member}]" if inspection.member else "")
    verdict = VERDICTS[lang][inspection.verdict]
    doc = inspection.document
    country = inspection.country
    if doc is None:
        lines = [f"{name}: {words['unread']} — {verdict}"]
    else:
        kind = KINDS[lang][doc.kind] if doc.kind else "PDF"
        totals = doc.totals
        lines = [
            f"{name}: {kind} {doc.number or '—'} ({inspection.format}) — {verdict} "
            f"({words['score']} {inspection.score:.2f})",
            f"  {words['issuer']} {_party(doc.issuer.tax_id, doc.issuer.check_digit)} "
            f"{doc.issuer.name or ''} → {words['receiver']} "
            f"{_party(doc.receiver.tax_id, doc.receiver.check_digit)} {doc.receiver.name or ''}",
            f"  {words['total']} {amount(totals.total, country) if totals.total else '—'} "
            f"{doc.currency or ''}; "
            f"{words['taxes']} {_amount(totals.taxes, country, inspection.format)}; "
            f"{words['withholdings']} {_amount(totals.withholdings, country, inspection.format)}",
            f"  UUID/CUFE {doc.uuid or '—'}",
        ]
        if doc.authority_evidence:
            evidence = doc.authority_evidence
            # DIAN's own words, quoted: they are Spanish whatever the language asked for.
            said = f' "{evidence.description}"' if evidence.description else ""
            lines.append(f"  DIAN: {evidence.code}{said}")
        if inspection.attachments:
            lines.append(f"  {words['pdf']}: {', '.join(inspection.attachments)}")
    lines += [
        f"  [{SEVERITIES[lang][f.severity]}] {f.code}: {message(f, lang, country)}{located(f.path)}"
        for f in inspection.findings
    ]
    return "\n".join(line.rstrip() for line in lines)


def _party(tax_id: str | None, check_digit: str | None) -> str:
    return f"{tax_id or '—'}-{check_digit}" if check_digit else tax_id or "—"


def _amount(value: str | None, country: str | None, form: str | None) -> str:
    """A sum of taxes or withholdings as the country writes it. One a document does not state
    is none for an XML, but unknown for a PDF's text (read for its total alone): "—", never a
    zero it did not print."""
    if value is None:
        return "—" if form == "pdf" else amount("0", country)
    return amount(value, country)
