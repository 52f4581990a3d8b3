"""How a person proves who they are (no HTTP in here)."""
