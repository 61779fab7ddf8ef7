"""Local development services and data: Azurite, sample segments, the end-to-end demo.

Not part of the function app: used by the demo, the tests and the benchmark.
"""
