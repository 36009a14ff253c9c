"""Worlds of many small networks, each with its own abuse desk: enough recipients for a batch
to start its compose workers."""

from __future__ import annotations

from notifier.sandbox.world import WorldHost, WorldNetwork

REGISTRIES = ("ripe", "arin", "apnic", "lacnic")


def desk_networks(octet: int, count: int, first_desk: str) -> tuple[WorldNetwork, ...]:
    """``count`` /24s in 127.``octet``.0.0/16 across four registries; network 0's desk is
    ``first_desk``, network N's ``abuse@orgN.test``."""
    return tuple(
        WorldNetwork(
            f"127.{octet}.{n}.0/24",
            REGISTRIES[n % len(REGISTRIES)],
            f"NET-{n}",
            f"NET-{n}",
            "NL",
            f"Org {n}",
            first_desk if n == 0 else f"abuse@org{n}.test",
        )
        for n in range(count)
    )


def desk_hosts(octet: int, count: int) -> tuple[WorldHost, ...]:
    """The first address of each of those networks."""
    return tuple(WorldHost(f"127.{octet}.{n}.1") for n in range(count))
