"""Running the IdP: health checks (health.py), structured logs with request ids (logs.py and the
requests.py middleware), and Prometheus metrics (metrics.py, served by scrape.py)."""
