"""What the services' start-up says about topics and ACLs, whichever adapter asked the broker:
the refusal lines are the same words on every client library."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fraudcore.errors import KafkaSecurityError


def refused_create(name: str, who: str) -> KafkaSecurityError:
    return KafkaSecurityError(
        f"topic {name} is missing (or {who} may not see it) and {who} is not "
        f"authorized to create it: have an admin create it and grant the ACLs"
    )


def refused_topic(name: str, who: str, needed: Sequence[str]) -> KafkaSecurityError:
    verbs = " and ".join(op.lower() for op in needed)
    return KafkaSecurityError(f"{who} is not authorized to {verbs} topic {name}")


def check_operations(name: str, who: str, needed: Sequence[str], allowed: Collection[str]) -> None:
    """Raise KafkaSecurityError naming what `who` may not do on topic `name`. `allowed`: the
    operations the broker says are authorized (upper case); empty: the broker did not say, and
    the first real request will tell."""
    if not allowed:
        return
    lacking = [op for op in needed if op not in allowed and "ALL" not in allowed]
    if lacking:
        verbs = " and ".join(op.lower() for op in lacking)
        raise KafkaSecurityError(
            f"{who} is not authorized to {verbs} topic {name} "
            f"(allowed: {', '.join(sorted(op.lower() for op in allowed))})"
        )
