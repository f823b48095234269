"""Parsing throughput: bytes → normalized document, beside satcfdi on the same CFDI files; and
the same with the local checks run on each document.

    python bench/parse.py [--seconds 3]

Runs each workload for about `--seconds`, in one process, on the real samples in
../shared/samples (CFDI 4.0/3.3 and DIAN AttachedDocument containers, which hold the invoice
and DIAN's ApplicationResponse as nested XML). satcfdi's `CFDI.from_string` (the bench extra) is
the same work for CFDI — bytes in, a parsed invoice out — and the ratio is ours / satcfdi.
The "+ checks" rows add facturasd/checks (arithmetic, rates, ids, withholdings for a Bogotá
withholding agent) to the same parse: their cost is the difference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from satcfdi.cfdi import CFDI

from facturasd.checks import Context, check
from facturasd.config import Company
from facturasd.formats.model import Inspection
from facturasd.formats.reader import read

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "samples"


def rate(
    work: Callable[[bytes], object], files: list[bytes], seconds: float
) -> tuple[float, float]:
    """Documents per second and MB per second over `files`, repeated for `seconds`."""
    done = size = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for data in files:
            work(data)
        done += len(files)
        size += sum(map(len, files))
    elapsed = time.perf_counter() - started
    return done / elapsed, size / elapsed / 1e6


def ours(data: bytes) -> Inspection:
    [inspection] = read(data, "bench")
    assert inspection.document is not None, inspection.findings
    return inspection


BUYER = Company(
    slug="bench",
    name="RG GLASS S.A.S.",
    country="CO",
    tax_id="901956924",
    city="11001",
    withholding_agent=True,
)
CONTEXT = Context(now=datetime(2026, 11, 28, tzinfo=UTC), companies=[BUYER])


def checked(data: bytes) -> object:
    return check(ours(data), CONTEXT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    cfdi = [p.read_bytes() for p in sorted((SAMPLES / "cfdi").glob("*.xml"))]
    dian = [p.read_bytes() for p in sorted((SAMPLES / "dian").glob("*.xml"))]
    rows = [
        ("CFDI, facturasd", *rate(ours, cfdi, args.seconds)),
        ("CFDI, satcfdi CFDI.from_string", *rate(CFDI.from_string, cfdi, args.seconds)),
        ("DIAN AttachedDocument, facturasd", *rate(ours, dian, args.seconds)),
        ("CFDI, facturasd + checks", *rate(checked, cfdi, args.seconds)),
        ("DIAN, facturasd + checks", *rate(checked, dian, args.seconds)),
    ]
    print(
        f"files: {len(cfdi)} CFDI ({sum(map(len, cfdi)) // 1024} KiB), "
        f"{len(dian)} DIAN ({sum(map(len, dian)) // 1024} KiB); {args.seconds:g}s each"
    )
    print(f"{'workload':<36}{'docs/s':>10}{'MB/s':>8}")
    for label, docs, mb in rows:
        print(f"{label:<36}{docs:>10.0f}{mb:>8.2f}")
    print(f"CFDI ratio facturasd / satcfdi: {rows[0][1] / rows[1][1]:.2f}x")
    cfdi_ratio, dian_ratio = rows[3][1] / rows[0][1], rows[4][1] / rows[2][1]
    print(f"with checks / without: CFDI {cfdi_ratio:.2f}x, DIAN {dian_ratio:.2f}x")


if __name__ == "__main__":
    main()
