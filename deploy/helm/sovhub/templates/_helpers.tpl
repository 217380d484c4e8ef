{{/* Names and labels. */}}
{{- define "sovhub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sovhub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sovhub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sovhub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of one component: gateway, migrate, worker, vllm. */}}
{{- define "sovhub.selector" -}}
app.kubernetes.io/name: {{ include "sovhub.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sovhub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sovhub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sovhub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sovhub.keyStoreClaim" -}}
{{- default (printf "%s-keystore" (include "sovhub.fullname" .)) .Values.keyStore.existingClaim -}}
{{- end -}}

{{/* Every pod runs as the image's unprivileged user; nothing may escalate. */}}
{{- define "sovhub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sovhub.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A reference to one key of a Secret the operator created (the chart never holds a secret value). */}}
{{- define "sovhub.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .name | quote }}
    key: {{ .key | quote }}
{{- end -}}

{{/*
The environment every sovhub container shares: secrets by reference, the paths of the volumes,
and migrate_on_start off (only the migration Job migrates).
*/}}
{{- define "sovhub.env" -}}
{{- $s := .Values.secrets -}}
- name: SOVHUB_DATA_DIR
  value: /var/lib/sovhub
- name: XDG_CACHE_HOME
  value: /var/cache/sovhub
- name: SOVHUB_MIGRATE_ON_START
  value: "false"
{{- if .Values.metricsPort }}
- name: SOVHUB_METRICS_PORT
  value: {{ .Values.metricsPort | quote }}
- name: SOVHUB_METRICS_HOST
  value: 0.0.0.0
{{- end }}
- name: SOVHUB_DATABASE_URL
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.databaseUrlKey) | nindent 2 }}
- name: SOVHUB_SOVEREIGNTY__KEY_PROVIDER
  value: env
- name: SOVHUB_SOVEREIGNTY__MASTER_KEY
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.masterKeyKey) | nindent 2 }}
- name: SOVHUB_SECRET_KEY
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.secretKeyKey) | nindent 2 }}
- name: SOVHUB_METRICS_TOKEN
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.metricsTokenKey) | nindent 2 }}
{{- if $s.redisUrlKey }}
- name: SOVHUB_ACCESS__REDIS_URL
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.redisUrlKey) | nindent 2 }}
{{- end }}
{{- if $s.smtpPasswordKey }}
- name: SOVHUB_MAIL__PASSWORD
  {{- include "sovhub.secretRef" (dict "name" $s.existingSecret "key" $s.smtpPasswordKey) | nindent 2 }}
{{- end }}
- name: SOVHUB_SOVEREIGNTY__KEY_STORE_DIR
  value: /var/lib/sovhub-keys/keystore
- name: SOVHUB_SOVEREIGNTY__ERASURE_JOURNAL_FILE
  value: /var/lib/sovhub-keys/erasures.jsonl
- name: SOVHUB_SOVEREIGNTY__AUDIT_SIGNING_KEY_FILE
  value: /etc/sovhub/audit/{{ .Values.auditSigningKey.key }}
{{- range $name, $idp := .Values.identityProviders }}
- name: SOVHUB_ACCESS__IDPS__{{ $name | upper }}__CLIENT_SECRET
  {{- include "sovhub.secretRef" (dict "name" $idp.clientSecret.secretName "key" $idp.clientSecret.key) | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "sovhub.volumeMounts" -}}
- name: data
  mountPath: /var/lib/sovhub
- name: config
  mountPath: /var/lib/sovhub/sovhub.toml
  subPath: sovhub.toml
  readOnly: true
- name: cache
  mountPath: /var/cache/sovhub
- name: tmp
  mountPath: /tmp
- name: keystore
  mountPath: /var/lib/sovhub-keys
- name: audit-key
  mountPath: /etc/sovhub/audit
  readOnly: true
{{- end -}}

{{- define "sovhub.volumes" -}}
- name: data
  emptyDir: {}
- name: cache
  emptyDir: {}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 256Mi
- name: config
  configMap:
    name: {{ include "sovhub.fullname" . }}
- name: keystore
  persistentVolumeClaim:
    claimName: {{ include "sovhub.keyStoreClaim" . }}
- name: audit-key
  secret:
    secretName: {{ .Values.auditSigningKey.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auditSigningKey.key | quote }}
        path: {{ .Values.auditSigningKey.key | quote }}
{{- end -}}

{{/* One NetworkPolicy peer set: {cidrs, namespaceSelector, podSelector, ports}; nothing when it names no peer. */}}
{{- define "sovhub.egressRule" -}}
{{- if or .cidrs .namespaceSelector .podSelector }}
- to:
  {{- range .cidrs }}
  - ipBlock:
      cidr: {{ . | quote }}
  {{- end }}
  {{- if or .namespaceSelector .podSelector }}
  - {{- with .namespaceSelector }}
    namespaceSelector:
      matchLabels:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- with .podSelector }}
    podSelector:
      matchLabels:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  {{- end }}
  ports:
  {{- range .ports }}
  - protocol: TCP
    port: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}
