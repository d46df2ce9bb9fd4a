"""A throwaway Redis Cluster for the benchmarks: primaries with one replica each, from the
machine's `redis-server`, on free loopback ports, every node stopped by its PID.

The tests start theirs with tests/fixtures/redis_topologies.py (which adds failover helpers);
the benchmarks run without tests/, so this is the bench-side starter, built on
bench/redis_server.py's launcher.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.processes import ServerProcess
from bench.redis_server import START_TIMEOUT_S, RedisState, launch_redis_server, wait_for_state

SLOTS = 16384
# A node's cluster bus listens on its port + 10000: both below Linux's ephemeral range.
_NODE_PORTS = range(12000, 22000)
# A replica's first sync at once, without the 5 s that Redis waits for more replicas to come.
_QUICK_SYNC = ("--repl-diskless-sync-delay", "0")


@dataclass
class ClusterNode:
    port: int
    server: ServerProcess
    primary: bool
    slots: tuple[int, int] | None = None  # a primary's first and last slot


@dataclass
class BenchCluster:
    nodes: list[ClusterNode]

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.primaries)
        return f"redis+cluster://{seeds}"

    @property
    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.primary]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10000) is free as well (added to
    `taken`)."""
    for _ in range(1000):
        port = random.choice(_NODE_PORTS)
        if {port, port + 10000} & taken or not (_bindable(port) and _bindable(port + 10000)):
            continue
        taken |= {port, port + 10000}
        return port
    raise RuntimeError("no free port pair for a cluster node")


def node_client(port: int) -> redis.Redis:
    """A short-timeout client of one node, for setting the cluster up."""
    return redis.Redis(port=port, socket_timeout=2.0, socket_connect_timeout=2.0)


def _wait(what: str, done: Callable[[], bool], nodes: list[ClusterNode]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if done():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(node.server.log()[-1500:] for node in nodes)
            raise RuntimeError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.05)


@contextmanager
def running_cluster(directory: Path, primaries: int = 3) -> Iterator[BenchCluster]:
    """`primaries` primaries, the slots split evenly, and one replica each, in sync."""
    cluster = BenchCluster([])
    taken: set[int] = set()
    try:
        for index in range(primaries * 2):
            port = free_cluster_port(taken)
            node_dir = directory / f"node-{port}"
            node_dir.mkdir(parents=True)
            options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            options += ["--cluster-node-timeout", "2000", *_QUICK_SYNC]
            server = launch_redis_server(port, node_dir, append_only=False, extra_args=options)
            cluster.nodes.append(ClusterNode(port, server, primary=index < primaries))
        ids = {}
        for node in cluster.nodes:
            wait_for_state(node.server, START_TIMEOUT_S, RedisState.UP)
            with node_client(node.port) as client:
                ids[node.port] = client.execute_command("CLUSTER", "MYID").decode()
        for index, node in enumerate(cluster.primaries):
            node.slots = (index * SLOTS // primaries, (index + 1) * SLOTS // primaries - 1)
            with node_client(node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", *node.slots)
        with node_client(cluster.nodes[0].port) as client:
            for node in cluster.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        _wait("every node to know every other", lambda: _all_known(cluster), cluster.nodes)
        replicas = cluster.nodes[primaries:]
        for primary, replica in zip(cluster.primaries, replicas, strict=True):
            with node_client(replica.port) as client:
                client.execute_command("CLUSTER", "REPLICATE", ids[primary.port])
        _wait("the cluster to be ok, replicas in sync", lambda: _healthy(cluster), cluster.nodes)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.server.stop()


def _all_known(cluster: BenchCluster) -> bool:
    for node in cluster.nodes:
        with node_client(node.port) as client:
            if int(client.cluster("INFO")["cluster_known_nodes"]) != len(cluster.nodes):
                return False
    return True


def _healthy(cluster: BenchCluster) -> bool:
    for node in cluster.nodes:
        with node_client(node.port) as client:
            info = client.cluster("INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
                return False
            replication = client.info("replication")
        if not node.primary and replication.get("master_link_status") != "up":
            return False
    return True
