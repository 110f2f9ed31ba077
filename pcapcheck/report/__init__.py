"""Report writers: JSON and HTML."""
