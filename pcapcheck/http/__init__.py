"""Strict, byte-exact HTTP/1.x parsing (sans-IO)."""
