#!/usr/bin/env bash
# Starts one Kafka node of docker-compose.yml (apache/kafka image) with SASL on every listener.
#
# The node's other settings come from its KAFKA_* environment; the JAAS configurations cannot:
# they hold the super user's password, and the image turns environment variables into properties
# only when their value has no "=" (a JAAS entry always has). So this writes them into the
# image's file input (/mnt/shared/config/server.properties, to which the image appends the
# environment's properties) and then runs the image's own start script.
#
#   CLIENT listener     SCRAM-SHA-512 for the roles (credentials made by the kafka-users one-shot),
#                       PLAIN for the super user kafka-admin (static: it exists before any SCRAM
#                       credential does), which the brokers also log in as between each other.
#   CONTROLLER listener PLAIN for kafka-admin only: KRaft controllers cannot use SCRAM.
#
# It also writes kafka-admin's client properties to /tmp/kafka-admin.properties (mode 0600) for
# the healthcheck and for operators: docker compose exec kafka-1 /opt/kafka/bin/kafka-acls.sh
#   --bootstrap-server localhost:9092 --command-config /tmp/kafka-admin.properties --list
set -euo pipefail

password="${SUPER_USER_PASSWORD:-}"
# Quoted inside JAAS and a properties file: no quotes, backslashes or white space.
if (( ${#password} < 16 )) || [[ "$password" == *[[:space:]\"\\]* ]]; then
  echo "kafka-node: KAFKA_ADMIN_PASSWORD must be at least 16 characters without quotes," \
    "backslashes or white space (e.g. openssl rand -hex 24)" >&2
  exit 1
fi

umask 077
plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
cat > /mnt/shared/config/server.properties <<EOF
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.plain.sasl.jaas.config=$plain username="kafka-admin" password="$password" user_kafka-admin="$password";
listener.name.controller.plain.sasl.jaas.config=$plain username="kafka-admin" password="$password" user_kafka-admin="$password";
EOF
cat > /tmp/kafka-admin.properties <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=$plain username="kafka-admin" password="$password";
EOF
unset password SUPER_USER_PASSWORD

exec /etc/kafka/docker/run
