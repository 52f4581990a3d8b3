"""Cross-cutting protections: random secrets, hashing, encryption at rest, headers, CSRF."""
