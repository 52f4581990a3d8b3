"""Runnable examples: a relying-party web app (`rp`) and a protected API (`api`)."""
