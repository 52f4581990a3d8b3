"""The operators' side: registering clients and users. The command line calls these functions."""
