"""Tools that stay out of the runtime package: the benchmark and its peer harnesses,
the chaos driver's helpers and /proc readings. Nothing under `jobnode/` imports them."""
