"""Resolve the Kafka broker's jars from Maven Central into a cache directory, once."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from smtp_discovery.platform.errors import InfrastructureError, MissingToolError

SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>smtp-discovery.local</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
      <!-- For AclCommand alone, whose dependencies the broker already brings; the others
           (Connect, Jetty, Jersey) would double the classpath. -->
      <exclusions>
        <exclusion>
          <groupId>*</groupId>
          <artifactId>*</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

NO_MAVEN = (
    "Maven (mvn) is needed once to fetch the Apache Kafka broker jars from Maven Central: "
    "install it (apt-get install maven), or set KAFKA_BOOTSTRAP=host:port to use an existing "
    "Kafka cluster instead of the embedded broker."
)


def render_pom(kafka_version: str) -> str:
    return _POM.format(kafka=kafka_version, scala=SCALA_VERSION, log4j=LOG4J_VERSION)


def cache_stamp(kafka_version: str) -> str:
    """What a complete cache's marker says: the version and the POM it was resolved from."""
    digest = hashlib.sha256(render_pom(kafka_version).encode()).hexdigest()[:16]
    return f"{kafka_version} {digest}\n"


def resolve_kafka_classpath(kafka_version: str, cache_dir: Path) -> list[Path]:
    """Return the broker's classpath, resolving it with Maven the first time.

    The result is kept in ``cache_dir/<version>/libs``; a half-finished resolution never
    replaces a good one (it is built in a temporary directory and renamed into place). The
    marker names the POM it was resolved from: a cache made for other artifacts (an older
    version of this project's, say without Kafka's tools) is resolved again.
    """
    target = cache_dir / kafka_version
    libs = target / "libs"
    marker = target / "complete"
    pom = render_pom(kafka_version)
    stamp = cache_stamp(kafka_version)
    if marker.is_file() and marker.read_text() == stamp:
        jars = sorted(libs.glob("*.jar"))
        if jars and all(j.is_file() for j in jars):
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(NO_MAVEN)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{kafka_version}-") as work:
        work_dir = Path(work)
        (work_dir / "pom.xml").write_text(pom)
        command = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(work_dir / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={work_dir / 'libs'}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
            raise InfrastructureError(
                f"Maven could not resolve org.apache.kafka:kafka_{SCALA_VERSION}:{kafka_version} "
                "(is Maven Central reachable, and is the version right?):\n" + "\n".join(tail)
            )
        (work_dir / "complete").write_text(stamp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work_dir, target)
        # TemporaryDirectory would delete the renamed tree's old name only; recreate it empty.
        work_dir.mkdir()
    return sorted(libs.glob("*.jar"))
