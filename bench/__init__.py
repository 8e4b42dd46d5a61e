"""`make bench`: throughput, latency and memory of the generator and detector on a local broker.

`python -m bench [--quick]` starts a jar broker of its own on free ports (kafka/broker.sh, data
dir in a temporary directory, wiped at the end), runs the real services as processes, and writes
bench/results/bench-<mode>.json, .md and .png. It reports; it is not a test.
"""
