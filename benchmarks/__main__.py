"""The runner: `python -m benchmarks [--quick] [--only NAME ...] [--output FILE] [--json FILE]`."""
