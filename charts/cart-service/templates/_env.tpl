{{/*
The service's environment: every variable the service reads (service/src/config.rs) and
the standard OTEL_* ones. With a Redis Cluster (redis.mode cluster, or an external one)
REDIS_MODE is cluster and REDIS_URL a comma-separated list of seed URLs. The Redis password and the stress token only ever arrive through
secretKeyRef, and the Redis TLS files as a read-only Secret volume (deployment.yaml).
*/}}
{{- define "cart-service.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: LISTEN_ADDR
  value: "0.0.0.0:{{ .Values.containerPort }}"
{{- $secret := include "cart-service.redisSecretName" . }}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "cart-service.redisSecretKey" . }}
{{- end }}
{{- if include "cart-service.redisIsCluster" . }}
- name: REDIS_MODE
  value: cluster
{{- end }}
- name: REDIS_URL
  value: {{ include "cart-service.redisUrl" . | quote }}
{{- with .Values.externalRedis.tlsSecret }}
{{- if .name }}
{{- $dir := include "cart-service.redisTlsDir" $ }}
{{- if .ca }}
- name: REDIS_CA_FILE
  value: {{ printf "%s/ca.crt" $dir | quote }}
{{- end }}
{{- if .clientCertificate }}
- name: REDIS_CLIENT_CERT_FILE
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: REDIS_CLIENT_KEY_FILE
  value: {{ printf "%s/tls.key" $dir | quote }}
{{- end }}
{{- end }}
{{- end }}
- name: REDIS_RESPONSE_TIMEOUT_MS
  value: {{ .Values.config.redisResponseTimeoutMs | int64 | quote }}
- name: REDIS_CONNECT_TIMEOUT_MS
  value: {{ .Values.config.redisConnectTimeoutMs | int64 | quote }}
- name: REDIS_WAIT_REPLICAS
  value: {{ .Values.config.redisWaitReplicas | int64 | quote }}
- name: REDIS_WAIT_TIMEOUT_MS
  value: {{ .Values.config.redisWaitTimeoutMs | int64 | quote }}
- name: REQUEST_TIMEOUT_MS
  value: {{ .Values.config.requestTimeoutMs | int64 | quote }}
- name: HTTP_IDLE_TIMEOUT_MS
  value: {{ .Values.config.httpIdleTimeoutMs | int64 | quote }}
- name: HTTP_MAX_CONNECTIONS
  value: {{ .Values.config.httpMaxConnections | int64 | quote }}
- name: CART_TTL_SECONDS
  value: {{ .Values.config.cartTtlSeconds | int64 | quote }}
- name: CART_MAX_ITEMS
  value: {{ .Values.config.cartMaxItems | int64 | quote }}
- name: CART_MAX_QUANTITY
  value: {{ .Values.config.cartMaxQuantity | int64 | quote }}
- name: RUST_LOG
  value: {{ .Values.config.rustLog | quote }}
- name: LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
{{- if .Values.logShipper.enabled }}
- name: LOG_FILE
  value: /var/log/app/cart-service.log
{{- end }}
- name: STRESS_ENABLED
  value: {{ .Values.config.stress.enabled | quote }}
- name: STRESS_MAX_CPU_ITERATIONS
  value: {{ .Values.config.stress.maxCpuIterations | int64 | quote }}
- name: STRESS_MAX_MEMORY_MB
  value: {{ .Values.config.stress.maxMemoryMb | int64 | quote }}
- name: STRESS_MAX_CONCURRENCY
  value: {{ .Values.config.stress.maxConcurrency | int64 | quote }}
- name: STRESS_MAX_TOTAL_MEMORY_MB
  value: {{ .Values.config.stress.maxTotalMemoryMb | int64 | quote }}
{{- with .Values.config.stress }}
{{- if and .enabled .token.existingSecret }}
- name: STRESS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .token.existingSecret }}
      key: {{ .token.existingSecretKey }}
{{- end }}
{{- end }}
{{- with .Values.auth }}
{{- if eq .mode "jwt" }}
- name: AUTH_MODE
  value: jwt
{{- with .jwksUrl }}
- name: AUTH_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- if or .publicKey.configMap .publicKey.secret }}
- name: AUTH_PUBLIC_KEY_FILE
  value: {{ include "cart-service.authPublicKeyFile" $ }}
{{- end }}
- name: AUTH_ISSUER
  value: {{ .issuer | quote }}
- name: AUTH_AUDIENCE
  value: {{ .audience | quote }}
- name: AUTH_USER_CLAIM
  value: {{ .userClaim | quote }}
- name: AUTH_LEEWAY_SECONDS
  value: {{ .leewaySeconds | int64 | quote }}
- name: AUTH_JWKS_REFRESH_SECONDS
  value: {{ .jwksRefreshSeconds | int64 | quote }}
{{- end }}
{{- end }}
- name: SHUTDOWN_DRAIN_DELAY_SECONDS
  value: {{ .Values.shutdown.drainDelaySeconds | int64 | quote }}
- name: SHUTDOWN_TIMEOUT_SECONDS
  value: {{ .Values.shutdown.timeoutSeconds | int64 | quote }}
- name: OTEL_SERVICE_NAME
  value: cart-service
{{- with include "cart-service.otlpEndpoint" . }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_EXPORTER_OTLP_TIMEOUT
  value: {{ mul $.Values.shutdown.flushSeconds 1000 | int64 | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.telemetry.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.telemetry.samplerArg | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.version={{ default .Chart.AppVersion .Values.image.tag }},deployment.environment.name={{ .Values.telemetry.environment }},k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.ip=$(POD_IP)"
{{- range $name, $value := .Values.config.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
