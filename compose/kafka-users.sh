#!/usr/bin/env bash
# The one-shot `kafka-users` of docker-compose.yml (apache/kafka image): as the super user
# kafka-admin, gives each role its SCRAM-SHA-512 login smtp-discovery-<role> (password from
# SMTP_DISCOVERY_<ROLE>_PASSWORD) and then the least ACLs of each role (compose/kafka-acls.sh,
# generated from `smtp-discovery topics acls`). Idempotent: it runs at every `docker compose up`;
# a changed password replaces the old one. The passwords go to Kafka's tools in files only this
# container's user can read, never on a command line.
set -euo pipefail
export PATH="/opt/kafka/bin:$PATH"
: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP: the brokers}"

valid() {  # name value: at least 16 characters, nothing a properties or JAAS value would mangle
  if (( ${#2} < 16 )) || [[ "$2" == *[[:space:]\"\\]* ]]; then
    echo "kafka-users: $1 must be at least 16 characters without quotes, backslashes or" \
      "white space (e.g. openssl rand -hex 24)" >&2
    exit 1
  fi
}

umask 077
valid KAFKA_ADMIN_PASSWORD "${SUPER_USER_PASSWORD:-}"
export KAFKA_ADMIN_CONFIG=/tmp/kafka-admin.properties
cat > "$KAFKA_ADMIN_CONFIG" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="kafka-admin" password="$SUPER_USER_PASSWORD";
EOF

for role in ingest worker sink admin setup; do
  variable="SMTP_DISCOVERY_${role^^}_PASSWORD"
  valid "$variable" "${!variable:-}"
  printf 'SCRAM-SHA-512=password=%s\n' "${!variable}" > /tmp/scram.properties
  kafka-configs.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$KAFKA_ADMIN_CONFIG" \
    --alter --entity-type users --entity-name "smtp-discovery-$role" \
    --add-config-file /tmp/scram.properties
done
rm -f /tmp/scram.properties

# shellcheck source=kafka-acls.sh
. /compose/kafka-acls.sh
echo "kafka-users: the logins and ACLs of ingest, worker, sink, admin and setup are in place"
