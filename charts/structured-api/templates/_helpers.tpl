{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "structured-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "structured-api.fullname" -}}
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

{{/* A component's resource name: <fullname>-<component>, within 63 characters. */}}
{{- define "structured-api.componentName" -}}
{{- printf "%s-%s" (include "structured-api.fullname" .root | trunc (sub 62 (len .component) | int) | trimSuffix "-") .component -}}
{{- end -}}

{{/* TRUSTED_PROXIES: an explicit integer wins; auto/null trusts the chart's own ingress
     (one hop) and nothing without it, so a direct client cannot spoof X-Forwarded-For. */}}
{{- define "structured-api.trustedProxies" -}}
{{- $value := .Values.trustedProxies -}}
{{- if or (kindIs "invalid" $value) (eq (toString $value) "auto") -}}
{{- ternary 1 0 (.Values.ingress.enabled | default false) -}}
{{- else -}}
{{- int $value -}}
{{- end -}}
{{- end -}}

{{- define "structured-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: only name and instance (immutable on Deployments). */}}
{{- define "structured-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "structured-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "structured-api.labels" -}}
helm.sh/chart: {{ include "structured-api.chart" . }}
{{ include "structured-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: structured-api
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component (api, worker, beat, operator, migrations). */}}
{{- define "structured-api.componentLabels" -}}
{{ include "structured-api.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod selector of one component: the selector labels plus the component. */}}
{{- define "structured-api.componentSelector" -}}
{{ include "structured-api.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "structured-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "structured-api.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "structured-api.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "structured-api.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "structured-api.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Secret names: an existing one, or the one the chart creates. */}}
{{- define "structured-api.appSecretName" -}}
{{- .Values.secrets.existingSecret | default (include "structured-api.componentName" (dict "root" . "component" "app")) -}}
{{- end -}}
{{/* The chart's own URL Secret (DATABASE_URL and REDIS_URL unless existing Secrets hold
     them): a release resource, so `helm uninstall` removes it. */}}
{{- define "structured-api.urlsSecretName" -}}
{{- include "structured-api.componentName" (dict "root" . "component" "urls") -}}
{{- end -}}
{{- define "structured-api.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (include "structured-api.urlsSecretName" .) -}}
{{- end -}}
{{/* DATABASE_URL of the migration hook: it runs before the release's own resources exist,
     so without an existing Secret it reads a hook Secret of its own (deleted once it ran). */}}
{{- define "structured-api.migrationsSecretName" -}}
{{- .Values.database.existingSecret | default (include "structured-api.componentName" (dict "root" . "component" "migrations")) -}}
{{- end -}}
{{- define "structured-api.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end -}}
{{- end -}}
{{- define "structured-api.redisSecretName" -}}
{{- .Values.redis.existingSecret | default (include "structured-api.urlsSecretName" .) -}}
{{- end -}}
{{- define "structured-api.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}REDIS_URL{{ end -}}
{{- end -}}
{{/* REDIS_URL of the chart's Secret: `redis.url`, or with `redis.sentinel.enabled`
     redis+sentinel://[:password@]host1:26379,.../<masterName>/<database> (app/settings/redis_url.py). */}}
{{- define "structured-api.redisUrl" -}}
{{- $s := .Values.redis.sentinel -}}
{{- if $s.enabled -}}
{{- if not $s.hosts }}{{ fail "redis.sentinel.enabled needs redis.sentinel.hosts (host:port of each sentinel)" }}{{ end -}}
{{- $hosts := list -}}
{{- range $s.hosts }}{{ $hosts = append $hosts (ternary . (printf "%s:26379" .) (contains ":" .)) }}{{ end -}}
{{- $auth := ternary (printf ":%s@" ($s.password | urlquery)) "" (ne $s.password "") -}}
{{- printf "redis+sentinel://%s%s/%s/%v" $auth (join "," $hosts) $s.masterName $s.database -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}
{{/* Where REDIS_SENTINEL_PASSWORD comes from, if anywhere: "name/key", or empty. */}}
{{- define "structured-api.sentinelPasswordRef" -}}
{{- $s := .Values.redis.sentinel -}}
{{- if and $s.enabled $s.existingSecret -}}
{{ $s.existingSecret }}/{{ $s.existingSecretKey }}
{{- else if and $s.enabled $s.sentinelPassword -}}
{{ include "structured-api.urlsSecretName" . }}/REDIS_SENTINEL_PASSWORD
{{- end -}}
{{- end -}}

{{/* The release's Secrets as namespace/name (OPERATOR_PROTECTED_SECRETS of the operator). */}}
{{- define "structured-api.protectedSecrets" -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list (include "structured-api.appSecretName" .) (include "structured-api.databaseSecretName" .) (include "structured-api.redisSecretName" .) (include "structured-api.migrationsSecretName" .) -}}
{{- with include "structured-api.sentinelPasswordRef" . }}{{ $names = append $names (splitList "/" . | first) }}{{ end -}}
{{- if and .Values.redis.cluster.enabled .Values.redis.cluster.existingSecret }}{{ $names = append $names .Values.redis.cluster.existingSecret }}{{ end -}}
{{- $out := list -}}
{{- range $names }}{{ $out = append $out (printf "%s/%s" $ns .) }}{{ end -}}
{{- join "," ($out | uniq) -}}
{{- end -}}

{{/* Namespaces the operator watches (namespace scope). */}}
{{- define "structured-api.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- join "," .Values.operator.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every app container: config from the ConfigMap, secrets by reference. */}}
{{- define "structured-api.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.databaseSecretName" . }}
      key: {{ include "structured-api.databaseSecretKey" . }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.redisSecretName" . }}
      key: {{ include "structured-api.redisSecretKey" . }}
{{- with include "structured-api.sentinelPasswordRef" . }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ splitList "/" . | first }}
      key: {{ splitList "/" . | last }}
{{- end }}
{{- with .Values.redis.cluster }}
{{- if .enabled }}
- name: REDIS_CLUSTER_NODES
  value: {{ required "redis.cluster.nodes: list the Cluster's seed nodes" (join "," .nodes) | quote }}
{{- if .existingSecret }}
- name: REDIS_CLUSTER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .existingSecretKey }}
{{- end }}
{{- end }}
{{- end }}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.appSecretName" . }}
      key: {{ .Values.secrets.keys.secretKey }}
- name: JWT_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.appSecretName" . }}
      key: {{ .Values.secrets.keys.jwtSigningKey }}
- name: JWT_PREVIOUS_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.appSecretName" . }}
      key: {{ .Values.secrets.keys.jwtPreviousSigningKey }}
      optional: true
- name: CREDENTIAL_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "structured-api.appSecretName" . }}
      key: {{ .Values.secrets.keys.credentialEncryptionKeys }}
      optional: true
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name={{ .Release.Namespace }}"
{{- end -}}

{{/* Pod-level settings shared by every pod. */}}
{{- define "structured-api.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Checksums that roll pods when their configuration changes. */}}
{{- define "structured-api.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/urls: {{ include (print .Template.BasePath "/secret-urls.yaml") . | sha256sum }}
{{- end -}}

{{/* Scheduling fields of one component's values. */}}
{{- define "structured-api.scheduling" -}}
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

{{/* The operator's policy rules (mirror of operator/sapi_operator/rbac.py). */}}
{{- define "structured-api.operatorRules" -}}
- apiGroups: [structured-api.io]
  resources: [apiversions, ratelimitpolicies, aiproviders, aimodelroutes]
  verbs: [get, list, watch, patch]
- apiGroups: [structured-api.io]
  resources: [apiversions/status, ratelimitpolicies/status, aiproviders/status, aimodelroutes/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}
