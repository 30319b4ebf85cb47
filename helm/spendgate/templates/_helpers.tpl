{{/*
Chart name, truncated to the 63 characters Kubernetes names allow.
*/}}
{{- define "spendgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name unless it already
contains it.
*/}}
{{- define "spendgate.fullname" -}}
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

{{- define "spendgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spendgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spendgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spendgate.labels" -}}
helm.sh/chart: {{ include "spendgate.chart" . }}
{{ include "spendgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spendgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spendgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spendgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The store URL the gateway will use: store.url, else config.store, else empty (the
gateway's embedded SQLite default).
*/}}
{{- define "spendgate.storeURL" -}}
{{- $config := .Values.config | default dict }}
{{- .Values.store.url | default (get $config "store") | default "" }}
{{- end }}

{{/*
"true" when the store is SQLite (explicitly or by default), else empty.
*/}}
{{- define "spendgate.sqlite" -}}
{{- $url := include "spendgate.storeURL" . }}
{{- if or (eq $url "") (hasPrefix "sqlite" $url) }}true{{ end }}
{{- end }}

{{/*
The config file: `config` with `store` set from store.url.
*/}}
{{- define "spendgate.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if .Values.store.url }}
{{- $_ := set $config "store" .Values.store.url }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
One environment variable read from a key of the existing Secret.
Arguments: env, key, secret, optional.
*/}}
{{- define "spendgate.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key | quote }}
      optional: {{ .optional }}
{{- end }}

{{/*
Refuse settings that cannot work.
*/}}
{{- define "spendgate.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (include "spendgate.sqlite" .) }}
{{- fail "replicaCount > 1 needs a shared store: set store.url to a redis://, redis+sentinel:// or redis+cluster:// URL (SQLite state is per pod)" }}
{{- end }}
{{- end }}
