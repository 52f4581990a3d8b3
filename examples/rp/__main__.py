"""`python -m examples.rp`: the relying-party web app on EXAMPLE_RP_URL (http://localhost:8002)."""

from examples.rp.app import main

main()
