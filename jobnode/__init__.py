"""jobnode: a self-coordinating cluster daemon for distributed job processing."""

__version__ = "0.1.0"
