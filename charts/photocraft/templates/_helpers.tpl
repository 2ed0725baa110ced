{{/* Names and labels. */}}
{{- define "photocraft.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "photocraft.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "photocraft.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "photocraft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "photocraft.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "photocraft.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "photocraft.tritonImage" -}}
{{- printf "%s:%s" .Values.triton.image.repository (default .Chart.AppVersion .Values.triton.image.tag) -}}
{{- end -}}

{{/* The Secret the chart makes for credentials given inline (development only). */}}
{{- define "photocraft.credentialsSecret" -}}
{{- printf "%s-credentials" (include "photocraft.fullname" .) -}}
{{- end -}}

{{/* The keyring Secret the chart makes when keyring.existingSecret is empty (keyring.yaml). */}}
{{- define "photocraft.keyringSecret" -}}
{{- printf "%s-keyring" (include "photocraft.fullname" .) -}}
{{- end -}}

{{/* An env var read from a Secret: the operator's existingSecret, else the chart's own. */}}
{{- define "photocraft.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ default (include "photocraft.credentialsSecret" .root) .existingSecret }}
      key: {{ ternary .key .chartKey (ne .existingSecret "") }}
{{- end -}}

{{- define "photocraft.kafkaSasl" -}}
{{- has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") -}}
{{- end -}}

{{/* CA bundles, each mounted from its Secret at /etc/photocraft/tls/<part>/ca.crt, where TLS is on. */}}
{{- define "photocraft.caSecrets" -}}
{{- $cas := dict -}}
{{- $on := dict "kafka" (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL"))
                "redis" (hasPrefix "rediss://" .Values.redis.url) "s3" true -}}
{{- range $part := list "kafka" "redis" "s3" -}}
{{- $tls := (index $.Values $part).tls -}}
{{- if and $tls.caSecret (get $on $part) -}}{{- $_ := set $cas $part $tls -}}{{- end -}}
{{- end -}}
{{- toYaml $cas -}}
{{- end -}}

{{/* The environment every service reads (photocraft_common.settings). */}}
{{- define "photocraft.env" -}}
{{- $v := .Values -}}
{{- $cas := include "photocraft.caSecrets" . | fromYaml -}}
- name: PHOTOCRAFT_PROFILE
  value: {{ $v.profile | quote }}
- name: PHOTOCRAFT_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: PHOTOCRAFT_JOB_TTL_S
  value: {{ $v.lifetimeSeconds | int64 | toString | quote }}
- name: HOME
  value: /tmp
- name: PHOTOCRAFT_KAFKA__BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" $v.kafka.bootstrapServers | quote }}
- name: PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
- name: PHOTOCRAFT_KAFKA__REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
{{- if eq (include "photocraft.kafkaSasl" .) "true" }}
- name: PHOTOCRAFT_KAFKA__SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: PHOTOCRAFT_KAFKA__SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
{{ include "photocraft.secretEnv" (dict "root" . "name" "PHOTOCRAFT_KAFKA__SASL_PASSWORD" "existingSecret" $v.kafka.sasl.existingSecret "key" $v.kafka.sasl.passwordKey "chartKey" "kafka-password") }}
{{- end }}
{{- if $cas.kafka }}
- name: PHOTOCRAFT_KAFKA__SSL_CAFILE
  value: /etc/photocraft/tls/kafka/ca.crt
{{- end }}
- name: PHOTOCRAFT_REDIS__URL
  value: {{ required "redis.url is required" $v.redis.url | quote }}
{{- if or $v.redis.existingSecret $v.redis.password }}
{{ include "photocraft.secretEnv" (dict "root" . "name" "PHOTOCRAFT_REDIS__PASSWORD" "existingSecret" $v.redis.existingSecret "key" $v.redis.passwordKey "chartKey" "redis-password") }}
{{- end }}
{{- if $cas.redis }}
- name: PHOTOCRAFT_REDIS__SSL_CA_CERTS
  value: /etc/photocraft/tls/redis/ca.crt
{{- end }}
# Empty: AWS S3 itself (set even then: the services' default is the local stack's S3).
- name: PHOTOCRAFT_S3__ENDPOINT_URL
  value: {{ $v.s3.endpointUrl | quote }}
{{- with $v.s3.publicEndpointUrl }}
- name: PHOTOCRAFT_S3__PUBLIC_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: PHOTOCRAFT_S3__REGION
  value: {{ $v.s3.region | quote }}
- name: PHOTOCRAFT_S3__BUCKET
  value: {{ $v.s3.bucket | quote }}
{{ include "photocraft.secretEnv" (dict "root" . "name" "PHOTOCRAFT_S3__ACCESS_KEY_ID" "existingSecret" $v.s3.existingSecret "key" $v.s3.accessKeyIdKey "chartKey" "s3-access-key-id") }}
{{ include "photocraft.secretEnv" (dict "root" . "name" "PHOTOCRAFT_S3__SECRET_ACCESS_KEY" "existingSecret" $v.s3.existingSecret "key" $v.s3.secretAccessKeyKey "chartKey" "s3-secret-access-key") }}
{{- if $cas.s3 }}
- name: PHOTOCRAFT_S3__CA_BUNDLE
  value: /etc/photocraft/tls/s3/ca.crt
{{- end }}
{{ include "photocraft.secretEnv" (dict "root" . "name" "PHOTOCRAFT_DATABASE__URL" "existingSecret" $v.database.existingSecret "key" $v.database.urlKey "chartKey" "database-url") }}
- name: PHOTOCRAFT_TRACING__ENABLED
  value: {{ $v.tracing.enabled | quote }}
- name: PHOTOCRAFT_TRACING__ENDPOINT
  value: {{ ternary $v.tracing.endpoint "" $v.tracing.enabled | quote }}
- name: PHOTOCRAFT_TRACING__SAMPLE_RATIO
  value: {{ $v.tracing.sampleRatio | toString | quote }}
- name: PHOTOCRAFT_KEYRING
  valueFrom:
    secretKeyRef:
      name: {{ default (include "photocraft.keyringSecret" .) $v.keyring.existingSecret }}
      key: {{ ternary $v.keyring.key "keyring" (ne $v.keyring.existingSecret "") }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
A pod's annotations: podAnnotations, and with metrics.podAnnotations Prometheus' scrape annotations for its
metrics port (dict root, port); nothing when both are empty.
*/}}
{{- define "photocraft.podAnnotations" -}}
{{- $annotations := deepCopy .root.Values.podAnnotations -}}
{{- if .root.Values.metrics.podAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (.port | int64 | toString) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- with $annotations }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* Writable scratch space (the root filesystem is read-only) and the CA bundles. */}}
{{- define "photocraft.volumes" -}}
- name: tmp
  emptyDir: {}
{{- range $part, $tls := include "photocraft.caSecrets" . | fromYaml }}
- name: {{ $part }}-ca
  secret:
    secretName: {{ $tls.caSecret }}
    items:
      - key: {{ $tls.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "photocraft.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- range $part, $_ := include "photocraft.caSecrets" . | fromYaml }}
- name: {{ $part }}-ca
  mountPath: /etc/photocraft/tls/{{ $part }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* An HTTP probe of a service's /healthz (liveness) or /readyz (readiness: Kafka, Redis, S3). */}}
{{- define "photocraft.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* Scheduling of one component: node selector, tolerations, affinity. */}}
{{- define "photocraft.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every workload shares (hook Jobs run as the namespace's default account). */}}
{{- define "photocraft.podSpec" -}}
automountServiceAccountToken: false
{{- if .Values.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* A PodDisruptionBudget: dict root, component, pdb. */}}
{{- define "photocraft.pdb" -}}
{{- if .pdb }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "photocraft.fullname" .root }}-{{ .component }}
  labels:
    {{- include "photocraft.labels" . | nindent 4 }}
spec:
  {{- toYaml .pdb | nindent 2 }}
  selector:
    matchLabels:
      {{- include "photocraft.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A HorizontalPodAutoscaler on CPU: dict root, component, autoscaling. */}}
{{- define "photocraft.hpa" -}}
{{- if .autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "photocraft.fullname" .root }}-{{ .component }}
  labels:
    {{- include "photocraft.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "photocraft.fullname" .root }}-{{ .component }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}

{{/*
Triton's model repository as Triton names it: s3://[scheme://host:port/]bucket/prefix.
An endpoint without a port gets the scheme's default one, which Triton requires.
*/}}
{{- define "photocraft.modelRepositoryUrl" -}}
{{- $repo := .Values.triton.modelRepository -}}
{{- with .Values.s3.endpointUrl -}}
{{- $u := urlParse . -}}
{{- $host := $u.host -}}
{{- if not (contains ":" $host) -}}{{- $host = printf "%s:%s" $host (ternary "443" "80" (eq $u.scheme "https")) -}}{{- end -}}
{{- printf "s3://%s://%s/%s/%s" $u.scheme $host $repo.bucket $repo.prefix -}}
{{- else -}}
{{- printf "s3://%s/%s" $repo.bucket $repo.prefix -}}
{{- end -}}
{{- end -}}

{{/* The models Triton serves (those with a config for triton.device), as a YAML list. */}}
{{- define "photocraft.models" -}}
{{- $models := list -}}
{{- range $path, $_ := .Files.Glob (printf "files/model-config/%s/*.pbtxt" .Values.triton.device) -}}
{{- $models = append $models (base $path | trimSuffix ".pbtxt") -}}
{{- end -}}
{{- toYaml $models -}}
{{- end -}}
