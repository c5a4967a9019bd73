"""Shared fixtures: where the real services are, and the corpus.

Services are found through environment variables (`IMGKIT_TEST_KAFKA`,
`IMGKIT_TEST_CLICKHOUSE_URL`); without them, testcontainers starts one where a
Docker engine answers; otherwise the test fails and says how to start it. A
missing service is never a silent skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"

KAFKA_HOWTO = ("no Kafka broker for the tests: start one with `bash deploy/kafka/kafka.sh start` "
               "and `export IMGKIT_TEST_KAFKA=127.0.0.1:9092` (or run `bash .ci/run`, which does "
               "both), or make a Docker engine available for testcontainers")
CLICKHOUSE_HOWTO = ("no ClickHouse server for the tests: set IMGKIT_TEST_CLICKHOUSE_URL="
                    "http://default:@host:8123/default, or make a Docker engine available for "
                    "testcontainers (the embedded chDB backend is tested without either)")


def docker_answers() -> bool:
    if not shutil.which("docker") and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "cameras").is_dir():
        pytest.fail(f"the test corpus is missing: expected {CORPUS}/cameras (shared/ beside the repo)")
    return CORPUS


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    address = os.environ.get("IMGKIT_TEST_KAFKA")
    if address:
        yield address
        return
    if not docker_answers():
        pytest.fail(KAFKA_HOWTO)
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def clickhouse_server_url() -> Iterator[str]:
    url = os.environ.get("IMGKIT_TEST_CLICKHOUSE_URL")
    if url:
        yield url
        return
    if not docker_answers():
        pytest.fail(CLICKHOUSE_HOWTO)
    from testcontainers.clickhouse import ClickHouseContainer

    with ClickHouseContainer("clickhouse/clickhouse-server:25.8") as ch:
        yield (f"http://{ch.username}:{ch.password}@{ch.get_container_host_ip()}:"
               f"{ch.get_exposed_port(8123)}/{ch.dbname}")
