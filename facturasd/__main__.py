from facturasd.cli import main

raise SystemExit(main())
