"""Tooling shared by the tests and the bench: the local jar broker and child processes.

Both start a broker from the project's jars (kafka/broker.sh) and run the services as processes
of their own, as a user runs them; this package is the one place that does either.

Why here: not under tests/, because the bench runs without pytest and must not import the test
suite (its conftest, fixtures and test-only dependencies); not under bench/, because the tests
are no benchmark; and not under fraudcore/, because the services never start a broker or a
child process, and fraudcore/ is what the image ships (Dockerfile), while this is development
tooling only. Standard library only, so that either side can import it without the other.
"""
