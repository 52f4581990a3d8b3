"""The `idp` command line; `idp.cli.main:main` is the console script."""
