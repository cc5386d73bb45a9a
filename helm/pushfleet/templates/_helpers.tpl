{{- define "pushfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pushfleet.fullname" -}}
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

{{- define "pushfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pushfleet.labels" -}}
helm.sh/chart: {{ include "pushfleet.chart" . }}
{{ include "pushfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pushfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "pushfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pushfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pushfleet.secretName" -}}
{{- default (include "pushfleet.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether a Secret holds anything the gateway needs. */}}
{{- define "pushfleet.hasSecret" -}}
{{- if or .Values.existingSecret .Values.apiKeys (and (eq .Values.auth.mode "jwt") .Values.auth.jwt.secret) }}true{{ end }}
{{- end }}

{{- define "pushfleet.redisUrl" -}}
{{- if .Values.redis.internal.enabled }}
{{- printf "redis://%s-redis:6379" (include "pushfleet.fullname" .) }}
{{- else }}
{{- required "redis.url is required (or set redis.internal.enabled=true)" .Values.redis.url }}
{{- end }}
{{- end }}
