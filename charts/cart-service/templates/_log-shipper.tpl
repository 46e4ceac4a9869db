{{/* The Fluent Bit sidecar, as a native sidecar container (an init container that keeps running). */}}
{{- define "cart-service.logShipperContainer" -}}
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
