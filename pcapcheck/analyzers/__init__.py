"""Sans-IO analyzers: they take TCP events and stream data and return findings."""
