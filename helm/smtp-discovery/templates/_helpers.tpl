{{/*
Shared pieces. Helpers that need a component take a dict: (dict "root" $ "component" "ingest").
*/}}

{{- define "smtp-discovery.labels" -}}
app.kubernetes.io/name: smtp-discovery
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "smtp-discovery.selectorLabels" -}}
app.kubernetes.io/name: smtp-discovery
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "smtp-discovery.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
{{- end }}

{{/* Refuse values that would only fail later, inside a pod. */}}
{{- define "smtp-discovery.validate" -}}
{{- $protocols := list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL" -}}
{{- if not (has .Values.kafka.securityProtocol $protocols) -}}
{{- fail (printf "kafka.securityProtocol must be one of %s" (join ", " $protocols)) -}}
{{- end -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if not (has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) -}}
{{- fail "kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with a SASL protocol" -}}
{{- end -}}
{{- $usernames := dict -}}
{{- $passwords := dict -}}
{{- range $role := include "smtp-discovery.kafkaRoles" . | splitList " " -}}
{{- $user := index $.Values.kafka.sasl.users $role -}}
{{- if not $user.username -}}
{{- fail (printf "kafka.sasl.users.%s.username is required with a SASL protocol" $role) -}}
{{- end -}}
{{- if not $user.passwordSecret.name -}}
{{- fail (printf "kafka.sasl.users.%s.passwordSecret.name is required with a SASL protocol (the password comes only from a Secret)" $role) -}}
{{- end -}}
{{- with index $usernames $user.username -}}
{{- fail (printf "kafka.sasl.users.%s and .%s have the same username %s: each role needs a principal of its own" . $role $user.username) -}}
{{- end -}}
{{- $ref := printf "%s/%s" $user.passwordSecret.name $user.passwordSecret.key -}}
{{- with index $passwords $ref -}}
{{- fail (printf "kafka.sasl.users.%s and .%s read the same passwordSecret %s: a pod would hold another role's password" . $role $ref) -}}
{{- end -}}
{{- $_ := set $usernames $user.username $role -}}
{{- $_ := set $passwords $ref $role -}}
{{- end -}}
{{- end -}}
{{- if and .Values.kafka.caSecret.name (not (hasSuffix "SSL" .Values.kafka.securityProtocol)) -}}
{{- fail "kafka.caSecret is used only with kafka.securityProtocol SSL or SASL_SSL" -}}
{{- end -}}
{{- if gt (int .Values.worker.replicas) (int .Values.topics.partitions) -}}
{{- fail "worker.replicas must not exceed topics.partitions (extra workers would sit idle)" -}}
{{- end -}}
{{- if and .Values.ingest.tls.require (not .Values.ingest.tls.secretName) -}}
{{- fail "ingest.tls.require needs ingest.tls.secretName" -}}
{{- end -}}
{{- end }}

{{/* Environment of every long-running role: logs and the ops endpoint. */}}
{{- define "smtp-discovery.env.common" -}}
- name: DISCOVERY_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: DISCOVERY_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: DISCOVERY_OPS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.ops.port) | quote }}
{{- end }}

{{/* The roles with a Kafka principal of their own (kafka.sasl.users); setup = `topics ensure`. */}}
{{- define "smtp-discovery.kafkaRoles" -}}
ingest worker sink admin setup
{{- end }}

{{/*
The Kafka cluster and the topics on it, logged in as one role's own principal and no other's.
Takes (dict "root" $ "role" "ingest").
*/}}
{{- define "smtp-discovery.env.kafka" -}}
{{- $v := .root.Values -}}
- name: KAFKA_BOOTSTRAP
  value: {{ $v.kafka.bootstrap | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $v.kafka.securityProtocol }}
{{- $user := index $v.kafka.sasl.users .role }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $user.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $user.passwordSecret.name | quote }}
      key: {{ $user.passwordSecret.key | quote }}
{{- end }}
{{- with $v }}
{{- if .kafka.caSecret.name }}
- name: KAFKA_SSL_CAFILE
  value: /etc/smtp-discovery/kafka-ca/ca.crt
{{- end }}
- name: DISCOVERY_TOPIC_PARTITIONS
  value: {{ .topics.partitions | quote }}
- name: DISCOVERY_TOPIC_REPLICATION
  value: {{ .topics.replication | quote }}
{{- if .topics.prefix }}
- name: DISCOVERY_TOPIC_PREFIX
  value: {{ .topics.prefix | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the admin role's token key, and its key in it. */}}
{{- define "smtp-discovery.tokenKeySecret" -}}
{{- .Values.admin.tokenKey.existingSecret.name | default (printf "%s-admin-token-key" .Release.Name) -}}
{{- end }}

{{- define "smtp-discovery.tokenKeySecretKey" -}}
{{- if .Values.admin.tokenKey.existingSecret.name -}}
{{- .Values.admin.tokenKey.existingSecret.key -}}
{{- else -}}
key
{{- end -}}
{{- end }}

{{/* The ClickHouse server: the URL (with its password) only from a Secret. */}}
{{- define "smtp-discovery.env.clickhouse" -}}
- name: CLICKHOUSE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.clickhouse.urlSecret.name | quote }}
      key: {{ .Values.clickhouse.urlSecret.key | quote }}
{{- if .Values.clickhouse.cluster }}
- name: CLICKHOUSE_CLUSTER
  value: {{ .Values.clickhouse.cluster | quote }}
{{- end }}
- name: DISCOVERY_MAIL_EVENTS_TTL_DAYS
  value: {{ .Values.clickhouse.mailEventsTtlDays | quote }}
{{- end }}

{{- define "smtp-discovery.ports.ops" -}}
- name: ops
  containerPort: {{ .Values.ops.port }}
  protocol: TCP
{{- end }}

{{/* Liveness and startup on /healthz, readiness on /readyz, all on the ops port. */}}
{{- define "smtp-discovery.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: ops}
  {{- toYaml .Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}

{{/* Writable places on a read-only root: /tmp always, the Kafka CA when configured. */}}
{{- define "smtp-discovery.volumeMounts.common" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/smtp-discovery/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "smtp-discovery.volumes.common" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name | quote }}
    items:
      - key: {{ .Values.kafka.caSecret.key | quote }}
        path: ca.crt
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every workload. */}}
{{- define "smtp-discovery.podSpec.common" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Spread a role's pods over nodes when the scheduler can. Takes the component dict. */}}
{{- define "smtp-discovery.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "smtp-discovery.selectorLabels" . | nindent 8 }}
{{- end }}

{{/* Pod template metadata of a long-running role (the ops port for annotation-based scrapes). */}}
{{- define "smtp-discovery.podMetadata" -}}
labels:
  {{- include "smtp-discovery.labels" . | nindent 2 }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .root.Values.ops.port | quote }}
  prometheus.io/path: /metrics
  {{- with .root.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
