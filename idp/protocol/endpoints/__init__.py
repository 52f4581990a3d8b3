"""One module per URL, each a few dozen lines."""
