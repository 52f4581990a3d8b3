"""OAuth 2.0 and OpenID Connect: what relying parties and runtime talk to."""
