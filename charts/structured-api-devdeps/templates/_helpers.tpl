{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "devdeps.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "devdeps.fullname" -}}
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
{{- define "devdeps.componentName" -}}
{{- printf "%s-%s" (include "devdeps.fullname" .root | trunc (sub 62 (len .component) | int) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "devdeps.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: only name and instance (immutable on Deployments). */}}
{{- define "devdeps.selectorLabels" -}}
app.kubernetes.io/name: {{ include "devdeps.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "devdeps.labels" -}}
helm.sh/chart: {{ include "devdeps.chart" . }}
{{ include "devdeps.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: structured-api
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component (postgresql, redis, provider-sim). */}}
{{- define "devdeps.componentLabels" -}}
{{ include "devdeps.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "devdeps.componentSelector" -}}
{{ include "devdeps.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "devdeps.secretName" -}}
{{- .Values.connectionSecret.name | default (include "devdeps.componentName" (dict "root" . "component" "urls")) -}}
{{- end -}}

{{/* Pod security context: non-root with the component's fixed uid, seccomp RuntimeDefault. */}}
{{- define "devdeps.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
fsGroup: {{ .runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* `host:port` of a component's Service inside the cluster. */}}
{{- define "devdeps.serviceHost" -}}
{{- printf "%s.%s.svc" (include "devdeps.componentName" .) .root.Release.Namespace -}}
{{- end -}}
