"""`python -m idp` is the `idp` command."""

from idp.cli.main import main

raise SystemExit(main())
