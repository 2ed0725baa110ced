{{/* Abuse limits of one component (docs/deploy.md): the proxies whose X-Forwarded-For gateway and
notifier believe (always set: empty means none), the gateway's rate limits and the notifier's
connection limits (set only when given: otherwise the services' production defaults). */}}
{{- define "photocraft.limitsEnv" -}}
{{- $v := .root.Values -}}
{{- if has .component (list "gateway" "notifier") }}
- name: PHOTOCRAFT_TRUSTED_PROXIES
  value: {{ join "," $v.trustedProxies | quote }}
{{- end }}
{{- if eq .component "gateway" }}
{{- with $v.gateway.rateLimits.perIp }}
- name: PHOTOCRAFT_RATE_LIMIT_PER_IP
  value: {{ . | quote }}
{{- end }}
{{- with $v.gateway.rateLimits.perKey }}
- name: PHOTOCRAFT_RATE_LIMIT_PER_KEY
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq .component "notifier" }}
{{- with $v.notifier.connectionLimits.perIp }}
- name: PHOTOCRAFT_CONNECTIONS_PER_IP
  value: {{ . | int64 | toString | quote }}
{{- end }}
{{- with $v.notifier.connectionLimits.perCredential }}
- name: PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL
  value: {{ . | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}
