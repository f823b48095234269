from facturasd.cli import main

# Guarded: worker processes import this module again under another name.
if __name__ == "__main__":
    raise SystemExit(main())
