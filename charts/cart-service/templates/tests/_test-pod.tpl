{{/*
A helm test pod: the test image running one sh script against the release's Service,
under the restricted Pod Security Standard like every other pod of the chart.
Call with (dict "root" $ "name" "readyz" "script" "...").
*/}}
{{- define "cart-service.testPod" -}}
{{- $root := .root }}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "cart-service.componentName" (dict "root" $root "component" (printf "test-%s" .name)) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cart-service.labels" (dict "root" $root "component" "test") | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    checkov.io/skip1: CKV_K8S_43=the test image is pinned by tag; set tests.image.digest to pin by digest
    checkov.io/skip2: CKV_K8S_15=pullPolicy IfNotPresent with a pinned tag
    checkov.io/skip3: CKV_K8S_8=a run-once test pod has no long-lived process to probe
    checkov.io/skip4: CKV_K8S_9=a run-once test pod has no long-lived process to probe
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- include "cart-service.podSecurityContext" 65532 | nindent 4 }}
  containers:
    - name: {{ .name }}
      image: {{ include "cart-service.image" (dict "root" $root "image" $root.Values.tests.image) }}
      imagePullPolicy: {{ $root.Values.tests.image.pullPolicy }}
      command: ["sh", "-ec"]
      args:
        - |
          {{- .script | nindent 10 }}
      env:
        - name: BASE_URL
          value: "http://{{ include "cart-service.fullname" $root }}:{{ $root.Values.service.port }}"
      securityContext:
        {{- include "cart-service.containerSecurityContext" 65532 | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 32Mi
{{- end }}
