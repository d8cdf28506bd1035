"""The `jobnode` command line."""
