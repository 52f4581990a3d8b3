"""Running the IdP: health checks (and, with issue 15, metrics and structured logs)."""
