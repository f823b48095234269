"""facturasd: checks, confirms and books the electronic invoices an office receives."""

__version__ = "0.1.0"
