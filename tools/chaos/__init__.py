"""What the chaos driver (scripts/chaos.py) shares with the chaos tests: the load generator,
the recording `history` processor, the history checker and a loopback TCP proxy that can cut links."""
