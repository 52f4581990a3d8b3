"""The operators' side: registering clients and users, and taking their access away (revocation).
The command line calls these functions."""
