"""Shared pieces of the benchmarks: a synthetic loopback world, inputs, and child processes.

Every address the benchmarks use is inside 127.0.0.0/8; every server they talk to is the
sandbox's, on loopback. Nothing here reaches any other address.
"""

from __future__ import annotations

import csv
import gc
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifier.sandbox.world import REGISTRIES, World, WorldHost, WorldNetwork

# a few countries per registry, so that every network has a national CERT to fall back to
COUNTRIES = {
    "arin": ("US", "CA"),
    "ripe": ("NL", "DE", "FR", "GB"),
    "apnic": ("JP", "IN", "AU"),
    "lacnic": ("BR", "AR", "CL"),
    "afrinic": ("ZA", "KE", "NG"),
}

SERVICES = (
    (9200, "Elasticsearch without authentication"),
    (6379, "Redis without authentication"),
    (27017, "MongoDB without authentication"),
    (5432, "PostgreSQL exposed to the internet"),
    (3306, "MySQL exposed to the internet"),
    (11211, "memcached reachable over UDP"),
    (2375, "Docker API without TLS"),
    (10250, "Kubelet API without authentication"),
    (5601, "Kibana without authentication"),
    (8080, "Jenkins with anonymous read"),
    (9000, "MinIO console exposed"),
    (5984, "CouchDB admin party"),
    (8086, "InfluxDB without authentication"),
    (2379, "etcd without client authentication"),
    (15672, "RabbitMQ default credentials"),
    (445, "SMB exposed to the internet"),
    (3389, "RDP exposed to the internet"),
    (23, "Telnet exposed to the internet"),
    (161, "SNMP with public community"),
    (873, "rsync module listing open"),
)

REGISTRY_KEYS = tuple(REGISTRIES)  # arin, ripe, apnic, lacnic, afrinic


@dataclass(frozen=True)
class BenchWorld:
    world: World
    # addresses, grouped by network in network order
    addresses: list[list[str]]
    # (address, forward-confirmed pool name): DNS records only, no web server behind them
    pool_names: tuple[tuple[str, str], ...] = ()

    def add_pool_names(self, dns: Any) -> None:
        """Put the pool names into the sandbox's nameserver (before it starts)."""
        for ip, name in self.pool_names:
            dns.add_host(name, ip)

    @property
    def networks(self) -> tuple[WorldNetwork, ...]:
        return self.world.networks

    def registry_of(self) -> dict[str, str]:
        """Network CIDR -> registry key."""
        return {n.cidr: n.registry for n in self.world.networks}


SECURITY_TXT = "Contact: mailto:security@{domain}\nExpires: {{expires}}\n"


def build_world(
    networks: int,
    per_network: int,
    *,
    shared_orgs: bool = True,
    generic_every: int = 0,
    named_every: int = 0,
) -> BenchWorld:
    """``networks`` /24s spread evenly over the five registries, ``per_network`` hosts in each.

    Registry ``r`` holds 127.(100 + 20r + k // 256).(k % 256).0/24 for its k-th network, so a
    registry's networks sit side by side in the same /16, as an ISP's customer assignments do.
    Every third network shares its organisation (and abuse desk) with the one before it, as
    providers with several blocks do. Every ``generic_every``-th address has a forward-confirmed
    pool name in its provider's domain (``ip-127-100-0-11.pool.org0.test``), and every
    ``named_every``-th a customer's host name whose web server publishes a security.txt (so
    the batch fetches it, and writes to its contact as well as to the abuse desk).
    """
    if not 1 <= networks <= 5 * 20 * 256:
        raise ValueError("networks must be between 1 and 25600")
    if not 1 <= per_network <= 200:
        raise ValueError("addresses per network must be between 1 and 200")
    nets: list[WorldNetwork] = []
    addresses: list[list[str]] = []
    for i in range(networks):
        key = REGISTRY_KEYS[i % 5]
        k = i // 5
        second = 100 + 20 * (i % 5) + k // 256
        third = k % 256
        cidr = f"127.{second}.{third}.0/24"
        assert ipaddress.IPv4Network(cidr).subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))
        org = (i * 2) // 3 if shared_orgs else i
        countries = COUNTRIES[key]
        nets.append(
            WorldNetwork(
                cidr,
                key,
                f"NET-BENCH-{i}",
                f"BENCH-NET-{i}",
                countries[org % len(countries)],
                f"Bench Hosting {org}",
                f"abuse@org{org}.test",
            )
        )
        addresses.append([f"127.{second}.{third}.{10 + 1 + j}" for j in range(per_network)])
    hosts: list[WorldHost] = []
    pool: list[tuple[str, str]] = []
    number = 0
    for i, group in enumerate(addresses):
        org = (i * 2) // 3 if shared_orgs else i
        for ip in group:
            number += 1
            if named_every and number % named_every == 1:
                domain = f"cust{number}.test"
                text = SECURITY_TXT.format(domain=domain)
                hosts.append(WorldHost(ip, f"www.{domain}", security_txt=text))
            elif generic_every and number % generic_every == 0:
                pool.append((ip, f"ip-{ip.replace('.', '-')}.pool.org{org}.test"))
    world = World(networks=tuple(nets), hosts=tuple(hosts))
    return BenchWorld(world, addresses, tuple(pool))


def sample_findings(bw: BenchWorld, count: int, seed: int) -> list[tuple[str, int, str]]:
    """``count`` distinct (ip, port, finding) over the world's addresses, in scanner order."""
    flat = [a for group in bw.addresses for a in group]
    if count > len(flat) * len(SERVICES):
        raise ValueError(f"at most {len(flat) * len(SERVICES)} distinct findings in this world")
    rng = random.Random(seed)
    seen: set[tuple[str, int]] = set()
    rows: list[tuple[str, int, str]] = []
    # every address gets at least one finding first, then the rest at random
    order = list(flat)
    rng.shuffle(order)
    for ip in order[:count]:
        port, text = SERVICES[rng.randrange(len(SERVICES))]
        seen.add((ip, port))
        rows.append((ip, port, text))
    while len(rows) < count:
        ip = flat[rng.randrange(len(flat))]
        port, text = SERVICES[rng.randrange(len(SERVICES))]
        if (ip, port) in seen:
            continue
        seen.add((ip, port))
        rows.append((ip, port, text))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: Sequence[tuple[str, int, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ip", "port", "finding"])
        writer.writerows(rows)


def registry_networks(bw: BenchWorld, ips: Iterator[str] | Sequence[str]) -> dict[str, int]:
    """Distinct networks per registry among ``ips``."""
    registry = bw.registry_of()
    seen: set[str] = set()
    for ip in ips:
        a, b, c, _ = ip.split(".")
        seen.add(f"{a}.{b}.{c}.0/24")
    counts = dict.fromkeys(REGISTRY_KEYS, 0)
    for cidr in seen:
        counts[registry[cidr]] += 1
    return counts


def named_domains(bw: BenchWorld, ips: Iterator[str] | Sequence[str]) -> int:
    """Distinct customer domains among ``ips``' host names: the domain registry is asked once
    for each, and the client paces it like every RDAP server (``rdap.rate_per_second``)."""
    names = {host.ip: host.name for host in bw.world.hosts if host.name}
    return len({names[ip].split(".", 1)[1] for ip in set(ips) if ip in names})


def lower_bound(
    per_registry: dict[str, int], rate: float, latency: float, domains: int = 0
) -> float:
    """Fastest a run can finish: the busiest registry's queries at ``rate``, plus one latency
    (the domain registry's ``domains`` queries too, when they are more)."""
    return max(*per_registry.values(), domains) / rate + latency


def configure_sandbox(sandbox: Any, rate: float, burst: float, keep_alive: bool = True) -> None:
    """Make every RIR of the sandbox enforce ``rate`` queries a second (429 beyond it), and
    keep HTTPS connections open between requests as production registries do."""
    sandbox.web.keep_alive = keep_alive
    for key in REGISTRY_KEYS:
        registry = sandbox.registries[key]
        registry.rate_limit_per_second = rate
        registry.rate_limit_burst = burst


def quiet_collector() -> None:
    """Keep the sandbox's world out of the parent's garbage collections, now that it is built.

    The registries, web and mail servers run in the parent's event loop: a collection walking
    a 30,000-address world stopped them for up to 95 ms, after which they handled the requests
    that came meanwhile together, and a registry counting them answered 429 to a client that
    had kept its pace. A real registry's collector is not the client's problem."""
    gc.freeze()


def bench_sections(rate: float, concurrency: int) -> dict[str, dict[str, Any]]:
    """Settings both modes share: the client's registry rate, and run caps out of the way."""
    return {
        "rdap": {"rate_per_second": rate, "timeout": 5, "max_retry_after": 5},
        # the caps protect recipients in real runs; here they would only measure themselves
        "limits": {
            "max_messages_per_run": 10_000_000,
            "per_recipient_per_day": 10_000_000,
            "per_domain_per_minute": 10_000_000,
            "concurrency": concurrency,
        },
    }


@dataclass
class ChildResult:
    status: int
    wall: float  # seen from the parent: process start to exit
    max_rss_kb: int  # the child's own peak (wait4)
    report: dict[str, Any]
    rss_mb: list[tuple[float, int]]  # (seconds since start, resident MB), every half second


def _watch_rss(pid: int, started: float, into: list[tuple[float, int]], stop: Any) -> None:
    while not stop.wait(0.5):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        into.append((time.perf_counter() - started, int(line.split()[1]) // 1024))
        except OSError:
            return


def run_child(args: Sequence[str], stdout_path: Path, stderr_path: Path) -> ChildResult:
    """Run a Python child, wait for it with ``wait4`` (its own peak RSS), parse its last line."""
    import threading

    started = time.perf_counter()
    timeline: list[tuple[float, int]] = []
    stop = threading.Event()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err)  # noqa: S603
        watcher = threading.Thread(
            target=_watch_rss, args=(proc.pid, started, timeline, stop), daemon=True
        )
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    report: dict[str, Any] = {}
    last = b""
    with stdout_path.open("rb") as handle:
        for line in handle:
            if line.startswith(b'{"bench"'):
                last = line
    if last:
        report = json.loads(last)
    return ChildResult(proc.returncode, wall, usage.ru_maxrss, report, timeline)


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM), in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants() -> list[int]:
    """Process ids of this process's descendants (compose workers and their server), now."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    found: list[int] = []
    wanted = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                found.append(pid)
                changed = True
    return found


def descendants_usage() -> tuple[float, int]:
    """CPU seconds used so far and peak resident KiB, summed over this process's descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = 0.0
    peak = 0
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rpartition(")")[2].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return cpu, peak
