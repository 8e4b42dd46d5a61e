"""The pure core: what a transaction is, how its bytes are read and written, the rules that
judge it, and the generator's pacing. Nothing here imports Kafka (tests/unit/test_layout.py
checks it), so all of it is unit-tested without a broker, and the rules live here.
"""
