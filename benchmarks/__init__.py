"""Benchmarks of jobwatch: `python -m benchmarks` writes `benchmarks/README.md`."""
