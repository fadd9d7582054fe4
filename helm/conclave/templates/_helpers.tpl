{{/* Names, labels, the rendered conclave.toml, and the pieces every pod shares. */}}

{{- define "conclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conclave.fullname" -}}
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

{{- define "conclave.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "conclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "conclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "conclave.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conclave.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "conclave.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "conclave.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecret }}{{ else }}{{ include "conclave.fullname" . }}{{ end }}
{{- end }}
{{- define "conclave.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "conclave.masterKeysSecretName" -}}
{{- if .Values.masterKeys.existingSecret }}{{ .Values.masterKeys.existingSecret }}{{ else }}{{ include "conclave.fullname" . }}{{ end }}
{{- end }}
{{- define "conclave.masterKeysSecretKey" -}}
{{- if .Values.masterKeys.existingSecret }}{{ .Values.masterKeys.existingSecretKey }}{{ else }}master-keys.toml{{ end }}
{{- end }}

{{/* Fails the render, naming the value, when a required secret is given neither way. */}}
{{- define "conclave.validate" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "conclave: set database.url (postgres://user:password@host:5432/conclave) or database.existingSecret: every pod shares one PostgreSQL database" }}
{{- end }}
{{- if and .Values.database.url (not (hasPrefix "postgres" .Values.database.url)) }}
{{- fail "conclave: database.url must be a postgres:// URL: SQLite serves one node only" }}
{{- end }}
{{- if and (not .Values.masterKeys.file) (not .Values.masterKeys.existingSecret) }}
{{- fail "conclave: set masterKeys.file (the master key file's TOML) or masterKeys.existingSecret: every pod must load the same master keys" }}
{{- end }}
{{- if and .Values.api.autoscaling.enabled (lt (int .Values.api.autoscaling.maxReplicas) (int .Values.api.autoscaling.minReplicas)) }}
{{- fail "conclave: api.autoscaling.maxReplicas must be at least minReplicas" }}
{{- end }}
{{- end }}

{{/*
conclave.toml from .Values.config plus the keys the chart owns. TOML is rendered here
rather than with toToml, which prints every number as a float (16.0) that the server's
integer settings refuse.
*/}}
{{- define "conclave.configToml" -}}
{{- $owned := dict "bind" "0.0.0.0:8080" "data_dir" "/var/lib/conclave" "keys" (dict "file" "/etc/conclave/keys/master-keys.toml") "database" (dict "migrate_on_start" (not .Values.migration.enabled)) }}
{{- if .Values.publicUrl }}{{ $_ := set $owned "public_url" .Values.publicUrl }}{{ end }}
{{- $config := mergeOverwrite (deepCopy (.Values.config | default dict)) $owned }}
{{- include "conclave.toml.table" (dict "prefix" "" "table" $config) }}
{{- end }}

{{- define "conclave.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "conclave.toml.isTableList" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) }}{{ if kindIs "map" (first .) }}yes{{ end }}{{ end }}
{{- end }}

{{- define "conclave.toml.value" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}{{ if eq (floor .) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "conclave.toml.value" $e }}{{ end }}]
{{- else }}{{ fail (printf "conclave: config value %v cannot be written as TOML" .) }}
{{- end }}
{{- end }}

{{- define "conclave.toml.table" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .table }}
{{- if not (or (kindIs "map" $value) (kindIs "invalid" $value) (include "conclave.toml.isTableList" $value)) }}
{{ include "conclave.toml.key" $key }} = {{ include "conclave.toml.value" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- $path := include "conclave.toml.key" $key }}
{{- if $prefix }}{{ $path = printf "%s.%s" $prefix $path }}{{ end }}
{{- if kindIs "map" $value }}

[{{ $path }}]
{{- include "conclave.toml.table" (dict "prefix" $path "table" $value) }}
{{- else if include "conclave.toml.isTableList" $value }}
{{- range $item := $value }}

[[{{ $path }}]]
{{- include "conclave.toml.table" (dict "prefix" $path "table" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment every Conclave container gets: the config file and the secrets. */}}
{{- define "conclave.env" -}}
- name: CONCLAVE_CONFIG
  value: /etc/conclave/config/conclave.toml
- name: CONCLAVE_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conclave.databaseSecretName" . }}
      key: {{ include "conclave.databaseSecretKey" . }}
{{- if .Values.auditSigningKey.existingSecret }}
- name: CONCLAVE_AUDIT__SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auditSigningKey.existingSecret }}
      key: {{ .Values.auditSigningKey.existingSecretKey }}
{{- else if .Values.auditSigningKey.value }}
- name: CONCLAVE_AUDIT__SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "conclave.fullname" . }}
      key: audit-signing-key
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "conclave.volumeMounts" -}}
- name: config
  mountPath: /etc/conclave/config
  readOnly: true
- name: master-keys
  mountPath: /etc/conclave/keys
  readOnly: true
- name: data
  mountPath: /var/lib/conclave
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "conclave.volumes" -}}
- name: config
  configMap:
    name: {{ include "conclave.fullname" . }}
- name: master-keys
  secret:
    secretName: {{ include "conclave.masterKeysSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "conclave.masterKeysSecretKey" . }}
        path: master-keys.toml
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (printf "%s-data" (include "conclave.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* One role's pod template (api or worker); call with (dict "root" $ "role" "api"). */}}
{{- define "conclave.podTemplate" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $values := index $root.Values $role }}
metadata:
  labels:
    {{- include "conclave.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- if $root.Values.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: "8080"
    prometheus.io/path: /metrics
    {{- end }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "conclave.serviceAccountName" $root }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: conclave
      image: {{ include "conclave.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["/usr/local/bin/conclave"]
      args: ["serve", "--role", {{ $role | quote }}]
      env:
        {{- include "conclave.env" $root | nindent 8 }}
      {{- with $root.Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "conclave.volumeMounts" $root | nindent 8 }}
  volumes:
    {{- include "conclave.volumes" $root | nindent 4 }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
