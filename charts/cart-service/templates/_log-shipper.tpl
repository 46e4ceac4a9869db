{{/* The log-shipper sidecar, as a native sidecar container (an init container that keeps running). */}}
{{- define "cart-service.logShipperContainer" -}}
{{- if eq .Values.logShipper.type "tail" }}
{{- include "cart-service.tailShipperContainer" . }}
{{- else }}
{{- include "cart-service.fluentBitContainer" . }}
{{- end }}
{{- end }}

{{/* Fluent Bit: parses each JSON line, adds the pod's name and namespace, sends to logShipper.outputs. */}}
{{- define "cart-service.fluentBitContainer" -}}
- name: log-shipper
  image: {{ include "cart-service.image" (dict "root" $ "image" .Values.logShipper.image) }}
  imagePullPolicy: {{ .Values.logShipper.image.pullPolicy }}
  restartPolicy: Always
  args:
    - --config=/fluent-bit/etc/conf/fluent-bit.conf
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
  securityContext:
    {{- include "cart-service.containerSecurityContext" .Values.runAsUser | nindent 4 }}
  ports:
    - name: flb-http
      containerPort: 2020
      protocol: TCP
  startupProbe:
    httpGet:
      path: /api/v1/health
      port: flb-http
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /api/v1/health
      port: flb-http
    periodSeconds: 10
    timeoutSeconds: 2
  readinessProbe:
    httpGet:
      path: /api/v1/health
      port: flb-http
    periodSeconds: 10
    timeoutSeconds: 2
  resources:
    {{- toYaml .Values.logShipper.resources | nindent 4 }}
  volumeMounts:
    - name: logs
      mountPath: /var/log/app
      readOnly: true
    - name: fluent-bit-config
      mountPath: /fluent-bit/etc/conf
      readOnly: true
    - name: fluent-bit-state
      mountPath: /var/lib/fluent-bit
{{- end }}


{{/*
busybox tail -F: streams the newest log file to the sidecar's stdout, moving to the next
file when the daily rotation starts one (the Kubernetes "streaming sidecar" pattern).
`$$(` is a literal `$(` to the kubelet, which would otherwise read it as a variable.
*/}}
{{- define "cart-service.tailShipperContainer" -}}
- name: log-shipper
  image: {{ include "cart-service.image" (dict "root" $ "image" .Values.logShipper.tailImage) }}
  imagePullPolicy: {{ .Values.logShipper.tailImage.pullPolicy }}
  restartPolicy: Always
  command: ["sh", "-c"]
  args:
    - |
      current=""
      pid=""
      trap '[ -n "$pid" ] && kill "$pid"; exit 0' TERM INT
      while :; do
        newest=$$(ls -1 /var/log/app/cart-service.log* 2>/dev/null | sort | tail -n 1)
        if [ -n "$newest" ] && [ "$newest" != "$current" ]; then
          [ -n "$pid" ] && kill "$pid" 2>/dev/null
          tail -n +1 -F "$newest" &
          pid=$!
          current=$newest
        fi
        sleep 5 &
        wait $!
      done
  securityContext:
    {{- include "cart-service.containerSecurityContext" .Values.runAsUser | nindent 4 }}
  # Alive while a tail follows the log file (or none exists yet); no readiness probe, so
  # a sidecar that restarts never takes the pod out of the Service.
  livenessProbe:
    exec:
      command: ["sh", "-c", "! ls /var/log/app/cart-service.log* >/dev/null 2>&1 || pidof tail >/dev/null"]
    periodSeconds: 15
    timeoutSeconds: 3
  resources:
    {{- toYaml .Values.logShipper.resources | nindent 4 }}
  volumeMounts:
    - name: logs
      mountPath: /var/log/app
      readOnly: true
{{- end }}
