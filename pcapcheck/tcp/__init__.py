"""TCP state: options, per-direction tracking, reassembly and the conntrack window model."""
