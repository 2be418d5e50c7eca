"""The distributed deployment, proven on one machine (issue 18), in its short form.

docker-compose.yml's services run as local processes on a three-broker KRaft cluster (RF 3,
min ISR 2, SASL and ACLs): the one-shots (topics, migrate, admin-key), two ingest nodes, two
streams workers, and one process holding chDB with the sink and the admin API (compose's
ClickHouse server becomes chDB here; tests/drill/deployment.py says what else is made local).
A real Postfix plays the tenants' mail servers. Six simulated weeks of mail for three tenants
(discoveries, outbound users, aliases, admin actions, expiry) run twice on the same cluster:
undisturbed, and with a broker, a streams worker, the sink and an ingest node SIGKILLed in turn
while the mail flows. Both runs must leave the same replies, address states, transitions,
mailboxes and ClickHouse rows, with no event stored twice.

The short form (here, in the suite): 4 partitions, a 6 s worker session timeout, a little mail.
The full form (``bench/cluster_drill.py``, in the full ``bench/run``, not in ``--quick``):
compose's 12 partitions and default timeouts, more mail, and the throughput with one worker and
with two.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.drill.drill import KILLS, differences, grant_projects, one_run, start_cluster

pytestmark = pytest.mark.cluster

OVERRIDES = {
    # Fewer partitions than compose's 12: each one costs the three brokers and the workers'
    # tables time at every start and failover, and the suite runs on two cores.
    "DISCOVERY_TOPIC_PARTITIONS": "4",
}
WORKER_OVERRIDES = {
    # Simulated weeks: the workers' expiry timer follows the event time, not the machine's.
    "DISCOVERY_CLOCK": "event-time",
    "DISCOVERY_EXPIRY_SCAN_S": "0.5",
    # The takeover after a SIGKILL waits for the group's session timeout: its floor here,
    # compose's default (60 s) in the full form.
    "DISCOVERY_STREAMS_SESSION_TIMEOUT_S": "6",
    "DISCOVERY_STREAMS_COMMIT_S": "0.5",
}


@pytest.mark.timeout(900)
async def test_killing_each_part_in_turn_changes_nothing(tmp_path: Path) -> None:
    kafka, passwords = start_cluster(tmp_path / "kafka")
    try:
        print(f"\ncluster of three brokers started in {kafka.startup_seconds:.1f}s")
        grant_projects(kafka, passwords, tmp_path, ["calm", "drill"], OVERRIDES)
        runs = {}
        for name, drill in (("calm", False), ("drill", True)):
            runs[name] = await one_run(
                kafka,
                passwords,
                tmp_path,
                name,
                steady=4,
                rounds=6,
                overrides=OVERRIDES,
                worker_overrides=WORKER_OVERRIDES,
                drill=drill,
            )
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in runs[name].phases.items())
            print(
                f"{name} run: {len(runs[name].replies)} messages in {runs[name].seconds:.1f}s "
                f"({phases})"
            )
    finally:
        kafka.stop()
    calm, drilled = runs["calm"], runs["drill"]
    for recovery in drilled.recoveries:
        details = ", ".join(f"{k} {v:.1f}s" for k, v in recovery.detail.items())
        print(f"recovered from the {recovery.kill} kill in {recovery.seconds:.1f}s ({details})")
    assert [r.kill for r in drilled.recoveries] == list(KILLS)
    assert all(math.isfinite(r.seconds) and r.seconds > 0 for r in drilled.recoveries)
    # The traffic did what it was meant to: the comparison below is not of two empty runs.
    statuses = {str(state[0]) for state in calm.states.values()}
    assert {"user", "alias", "invalid"} <= statuses, statuses
    reached = {to for (_, _, _, to, _) in calm.transitions}
    assert {"pending", "discovered", "user", "alias", "invalid"} <= reached, reached
    assert "550" in calm.replies and calm.replies.count("250") > 100
    assert sum(calm.delivered.values()) == calm.replies.count("250")
    found = differences(calm, drilled)
    print("\n".join(found))
    assert found == []
