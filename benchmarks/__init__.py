"""The aioluasock benchmark suite: ``python -m benchmarks.run [--quick]`` (see README-SECTION.md)."""
