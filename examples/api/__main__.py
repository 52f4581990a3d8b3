"""`python -m examples.api`: the protected notes API on EXAMPLE_API_URL (http://localhost:8001)."""

from examples.api.app import main

main()
