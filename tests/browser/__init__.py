"""Helpers for the report tests: hand-built conversation results and a headless Chromium runner."""
