"""pcapcheck: offline forensic analysis of TCP and HTTP/1.x in packet captures."""

__version__ = "0.1.0"
