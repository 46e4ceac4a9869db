{{/*
Names, labels and the pieces every workload shares. Kubernetes names are capped at
63 characters (DNS labels), so every name is truncated here and nowhere else.
*/}}

{{- define "cart-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cart-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's name: the fullname with a suffix, still within 63 characters. */}}
{{- define "cart-service.componentName" -}}
{{- printf "%s-%s" (include "cart-service.fullname" .root | trunc (sub 62 (len .component) | int) | trimSuffix "-") .component }}
{{- end }}

{{- define "cart-service.redisName" -}}
{{- include "cart-service.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{- define "cart-service.collectorName" -}}
{{- include "cart-service.componentName" (dict "root" . "component" "otel-collector") }}
{{- end }}

{{- define "cart-service.jaegerName" -}}
{{- include "cart-service.componentName" (dict "root" . "component" "jaeger") }}
{{- end }}

{{- define "cart-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels for a component: call with (dict "root" $ "component" "api"). */}}
{{- define "cart-service.labels" -}}
helm.sh/chart: {{ include "cart-service.chart" .root }}
{{ include "cart-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: cart-service
{{- end }}

{{- define "cart-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cart-service.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cart-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cart-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cart-service.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Redis Cluster of redis.mode cluster: its StatefulSet, headless Service and hook Job. */}}
{{- define "cart-service.redisClusterName" -}}
{{- include "cart-service.componentName" (dict "root" . "component" "redis-cluster") }}
{{- end }}

{{- define "cart-service.redisClusterJobName" -}}
{{- include "cart-service.componentName" (dict "root" . "component" "redis-cluster-init") }}
{{- end }}

{{/* The in-release Redis StatefulSet (and its ConfigMap and NetworkPolicy) of either mode. */}}
{{- define "cart-service.redisWorkloadName" -}}
{{- if eq .Values.redis.mode "cluster" }}
{{- include "cart-service.redisClusterName" . }}
{{- else }}
{{- include "cart-service.redisName" . }}
{{- end }}
{{- end }}

{{/* The DNS domain of the Redis pods: <pod>.<this> names one, stable across restarts. */}}
{{- define "cart-service.redisPodDomain" -}}
{{- printf "%s-headless.%s.svc" (include "cart-service.redisWorkloadName" .) .Release.Namespace }}
{{- end }}

{{/* Pods of the in-release Redis Cluster: masters x (1 + replicasPerMaster). */}}
{{- define "cart-service.redisClusterSize" -}}
{{- mul .Values.redis.cluster.masters (add1 .Values.redis.cluster.replicasPerMaster) }}
{{- end }}

{{- define "cart-service.redisClusterBusPort" -}}
{{- .Values.redis.cluster.busPort | default (add .Values.redis.port 10000) }}
{{- end }}

{{/* The host names of the in-release cluster's nodes, space-separated, in ordinal order. */}}
{{- define "cart-service.redisClusterHosts" -}}
{{- $name := include "cart-service.redisClusterName" . }}
{{- $domain := include "cart-service.redisPodDomain" . }}
{{- $hosts := list }}
{{- range $i := until (include "cart-service.redisClusterSize" . | int) }}
{{- $hosts = append $hosts (printf "%s-%d.%s" $name $i $domain) }}
{{- end }}
{{- join " " $hosts }}
{{- end }}

{{/* Non-empty when the service talks to a Redis Cluster, in the release or outside it. */}}
{{- define "cart-service.redisIsCluster" -}}
{{- if or (eq .Values.redis.mode "cluster") (and (eq .Values.redis.mode "external") .Values.externalRedis.cluster) }}true{{ end }}
{{- end }}

{{/* The Secret holding the Redis password, and its key; empty name when there is none. */}}
{{- define "cart-service.redisSecretName" -}}
{{- if ne .Values.redis.mode "external" }}
{{- default (include "cart-service.redisName" .) .Values.redis.auth.existingSecret }}
{{- else }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "cart-service.redisSecretKey" -}}
{{- if ne .Values.redis.mode "external" }}
{{- .Values.redis.auth.existingSecretKey }}
{{- else }}
{{- .Values.externalRedis.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Where the files of externalRedis.tlsSecret are mounted in the service's container. */}}
{{- define "cart-service.redisTlsDir" -}}
/etc/cart-service/redis-tls
{{- end }}

{{/*
REDIS_URL, with the password expanded by the kubelet from $(REDIS_PASSWORD), never inlined.
A Redis Cluster gets a comma-separated list of seed URLs: every node of the in-release
cluster, or externalRedis.nodes.
*/}}
{{- define "cart-service.redisUrl" -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne (include "cart-service.redisSecretName" .) "") }}
{{- $mode := .Values.redis.mode }}
{{- if eq $mode "standalone" }}
{{- printf "redis://%s%s:%d" $auth (include "cart-service.redisName" .) (int .Values.redis.port) }}
{{- else if eq $mode "cluster" }}
{{- $urls := list }}
{{- range splitList " " (include "cart-service.redisClusterHosts" .) }}
{{- $urls = append $urls (printf "redis://%s%s:%d" $auth . (int $.Values.redis.port)) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- $scheme := ternary "rediss" "redis" .Values.externalRedis.tls }}
{{- if .Values.externalRedis.cluster }}
{{- $urls := list }}
{{- range .Values.externalRedis.nodes }}
{{- $urls = append $urls (printf "%s://%s%s" $scheme $auth .) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- printf "%s://%s%s:%d/%d" $scheme $auth .Values.externalRedis.host (int .Values.externalRedis.port) (int .Values.externalRedis.database) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cart-service.otlpEndpoint" -}}
{{- if .Values.otelCollector.enabled }}
{{- printf "http://%s:4317" (include "cart-service.collectorName" .) }}
{{- else }}
{{- .Values.telemetry.otlpEndpoint }}
{{- end }}
{{- end }}

{{/* The restricted Pod Security Standard, for a pod: call with the pod's UID. */}}
{{- define "cart-service.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted Pod Security Standard, for a container: call with its UID. */}}
{{- define "cart-service.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Impossible combinations, refused with a message that names the value. */}}
{{- define "cart-service.validate" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not be greater than autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- include "cart-service.validateRedis" . }}
{{- with .Values.config.stress }}
{{- if and .enabled (gt (int .maxMemoryMb) (int .maxTotalMemoryMb)) }}
{{- fail (printf "config.stress.maxMemoryMb (%d) must not be greater than config.stress.maxTotalMemoryMb (%d), or the service refuses to start" (int .maxMemoryMb) (int .maxTotalMemoryMb)) }}
{{- end }}
{{- end }}
{{- with .Values.externalRedis.tlsSecret }}
{{- if and .name (or (ne $.Values.redis.mode "external") (not $.Values.externalRedis.tls)) }}
{{- fail "externalRedis.tlsSecret.name needs redis.mode external and externalRedis.tls true: its files are for a TLS connection to the external Redis" }}
{{- end }}
{{- if and .name (not .ca) (not .clientCertificate) }}
{{- fail "externalRedis.tlsSecret.name is set, but neither externalRedis.tlsSecret.ca nor externalRedis.tlsSecret.clientCertificate: nothing would be mounted" }}
{{- end }}
{{- end }}
{{- if and .Values.jaeger.enabled (not .Values.otelCollector.enabled) }}
{{- fail "jaeger.enabled needs otelCollector.enabled: the collector is what exports to Jaeger" }}
{{- end }}
{{- include "cart-service.validateAuth" . }}
{{- if and .Values.podDisruptionBudget.enabled (not .Values.autoscaling.enabled) (le (int .Values.replicaCount) (int .Values.podDisruptionBudget.minAvailable)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be lower than replicaCount (%d), or no node could ever be drained" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled .Values.autoscaling.enabled (le (int .Values.autoscaling.minReplicas) (int .Values.podDisruptionBudget.minAvailable)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be lower than autoscaling.minReplicas (%d), or no node could ever be drained" (int .Values.podDisruptionBudget.minAvailable) (int .Values.autoscaling.minReplicas)) }}
{{- end }}
{{- end }}

{{/* The labels of an SLO alert (rules/cart-service-slo.yaml): call with (dict "rule" .Values.prometheusRule "tier" $tier "slo" "latency"). */}}
{{- define "cart-service.sloAlertLabels" -}}
severity: {{ .tier.severity }}
slo: {{ .slo }}
{{- with .rule.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
auth: jwt needs one key source (jwksUrl, or publicKey from one ConfigMap or Secret), an
issuer and an audience, and with NetworkPolicies a way out to the JWKS; none takes no key
source, as the service itself refuses AUTH_* variables without AUTH_MODE=jwt.
*/}}
{{- define "cart-service.validateAuth" -}}
{{- $auth := .Values.auth }}
{{- $pem := or $auth.publicKey.configMap $auth.publicKey.secret }}
{{- if and $auth.publicKey.configMap $auth.publicKey.secret }}
{{- fail "auth.publicKey.configMap and auth.publicKey.secret cannot both be set: the key comes from one of them" }}
{{- end }}
{{- if eq $auth.mode "jwt" }}
{{- if and $auth.jwksUrl $pem }}
{{- fail "auth.jwksUrl and auth.publicKey cannot both be set: choose one key source" }}
{{- end }}
{{- if not (or $auth.jwksUrl $pem) }}
{{- fail "auth.mode jwt needs auth.jwksUrl or auth.publicKey.configMap (or .secret)" }}
{{- end }}
{{- if not $auth.issuer }}
{{- fail "auth.issuer is required when auth.mode is jwt" }}
{{- end }}
{{- if not $auth.audience }}
{{- fail "auth.audience is required when auth.mode is jwt" }}
{{- end }}
{{- if and $auth.jwksUrl .Values.networkPolicy.enabled (not .Values.networkPolicy.extraEgress) }}
{{- fail "auth.jwksUrl needs networkPolicy.extraEgress to let the pods reach the issuer's JWKS (or networkPolicy.enabled false)" }}
{{- end }}
{{- else if or $auth.jwksUrl $pem }}
{{- fail "auth.jwksUrl or auth.publicKey is set but auth.mode is none: set auth.mode to jwt, or unset them" }}
{{- end }}
{{- end }}

{{/* Where the auth public key is mounted (AUTH_PUBLIC_KEY_FILE). */}}
{{- define "cart-service.authPublicKeyFile" -}}
/etc/cart-service/auth/public-key.pem
{{- end }}

{{/* Non-empty when the auth public key is mounted: jwt mode with a ConfigMap or Secret. */}}
{{- define "cart-service.authPublicKeyMounted" -}}
{{- if and (eq .Values.auth.mode "jwt") (or .Values.auth.publicKey.configMap .Values.auth.publicKey.secret) }}true{{ end }}
{{- end }}

{{/*
redis.mode and what each mode needs. A formed Redis Cluster is never shrunk by an upgrade:
the StatefulSet would delete pods that hold hash slots before any hook could object, so a
smaller size than the live StatefulSet's is refused here (lookup finds nothing under
`helm template`). A larger one renders, and the hook Job refuses to add the new nodes
(templates/redis/cluster-job.yaml).
*/}}
{{- define "cart-service.validateRedis" -}}
{{- $redis := .Values.redis }}
{{- $external := .Values.externalRedis }}
{{- if hasKey $redis "enabled" }}
{{- fail "redis.enabled was replaced by redis.mode: use redis.mode standalone (was enabled: true), cluster for a Redis Cluster in the release, or external (was enabled: false) with externalRedis" }}
{{- end }}
{{- if eq $redis.mode "external" }}
{{- if $external.cluster }}
{{- if not $external.nodes }}
{{- fail "externalRedis.nodes needs at least one host:port seed node when externalRedis.cluster is true" }}
{{- end }}
{{- if ne (int $external.database) 0 }}
{{- fail (printf "externalRedis.database (%d) must be 0 when externalRedis.cluster is true: Redis Cluster has only database 0" (int $external.database)) }}
{{- end }}
{{- else if not $external.host }}
{{- fail "externalRedis.host is required when redis.mode is external (or externalRedis.cluster true with externalRedis.nodes)" }}
{{- end }}
{{- else if or $external.cluster $external.nodes }}
{{- fail (printf "externalRedis.cluster and externalRedis.nodes are for redis.mode external, not %s" $redis.mode) }}
{{- end }}
{{- if and $external.nodes (not $external.cluster) }}
{{- fail "externalRedis.nodes is set but externalRedis.cluster is false: set externalRedis.cluster true, or externalRedis.host for a single Redis" }}
{{- end }}
{{- $wait := int .Values.config.redisWaitReplicas }}
{{- if and (eq $redis.mode "standalone") (gt $wait 0) }}
{{- fail (printf "config.redisWaitReplicas (%d) must be 0 with redis.mode standalone: that Redis has no replica to wait for" $wait) }}
{{- end }}
{{- if eq $redis.mode "cluster" }}
{{- $cluster := $redis.cluster }}
{{- if gt $wait (int $cluster.replicasPerMaster) }}
{{- fail (printf "config.redisWaitReplicas (%d) must not be greater than redis.cluster.replicasPerMaster (%d): every write would wait for replicas that do not exist" $wait (int $cluster.replicasPerMaster)) }}
{{- end }}
{{- if not $redis.persistence.enabled }}
{{- fail "redis.mode cluster needs redis.persistence.enabled: a node's nodes.conf, its identity in the cluster, must outlive its pod" }}
{{- end }}
{{- $bus := include "cart-service.redisClusterBusPort" . | int }}
{{- if or (eq $bus (int $redis.port)) (gt $bus 65535) }}
{{- fail (printf "redis.cluster.busPort (%d) must differ from redis.port and be at most 65535; 0 means redis.port + 10000" $bus) }}
{{- end }}
{{- $size := include "cart-service.redisClusterSize" . | int }}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "cart-service.redisClusterName" .) }}
{{- if and $live (gt (int $live.spec.replicas) $size) }}
{{- fail (printf "redis.cluster.masters x (1 + replicasPerMaster) is %d but the Redis Cluster has %d pods: shrinking it would delete pods that hold hash slots. Move their slots away (redis-cli --cluster reshard), remove them (redis-cli --cluster del-node), scale the StatefulSet down with kubectl, then upgrade" $size (int $live.spec.replicas)) }}
{{- end }}
{{- end }}
{{- end }}
