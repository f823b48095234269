"""The reports an office reads (SPEC §2.6, docs/reports.md): the daily report of the invoices
received (`reporte-*.md/.json/.csv`) and the monthly tax summary (`resumen-YYYY-MM.*`), written
atomically in `paths.reports` by the scheduler's tasks and by `facturasd report`."""

from facturasd.reports.daily import Describe, Recommend, Said, write_daily
from facturasd.reports.files import Written
from facturasd.reports.monthly import write_monthly

__all__ = ["Describe", "Recommend", "Said", "Written", "write_daily", "write_monthly"]
