{{/* Names per reference §1.3. */}}
{{- define "drv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "drv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "drv.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "drv.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{/* Standard labels on top-level objects (§1.4). */}}
{{- define "drv.labels" -}}
helm.sh/chart: {{ printf "%s-%s" (include "drv.name" .) .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/name: {{ include "drv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector of one component; call with (list $ "kubelet-plugin"). selectorLabelsOverride replaces it for all. */}}
{{- define "drv.selector" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- if $root.Values.selectorLabelsOverride -}}
{{- toYaml $root.Values.selectorLabelsOverride -}}
{{- else -}}
{{ include "drv.name" $root }}-component: {{ $component }}
{{- end -}}
{{- end -}}

{{/* Pod template labels: name, instance and the component selector (§1.4). */}}
{{- define "drv.podLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "drv.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{ include "drv.selector" . }}
{{- end -}}

{{- define "drv.serviceAccountName" -}}
{{- default (printf "%s-service-account" (include "drv.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "drv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{/* resource.k8s.io version for DeviceClasses (§1.7): value wins, else the highest the cluster serves. */}}
{{- define "drv.resourceApiVersion" -}}
{{- if .Values.resourceApiVersion -}}
{{- .Values.resourceApiVersion -}}
{{- else if .Capabilities.APIVersions.Has "resource.k8s.io/v1" -}}
resource.k8s.io/v1
{{- else if .Capabilities.APIVersions.Has "resource.k8s.io/v1beta2" -}}
resource.k8s.io/v1beta2
{{- else if .Capabilities.APIVersions.Has "resource.k8s.io/v1beta1" -}}
resource.k8s.io/v1beta1
{{- end -}}
{{- end -}}

{{/* FEATURE_GATES value: "Key=value," for every featureGates key (§1.8). */}}
{{- define "drv.featureGates" -}}
{{- range $k, $v := .Values.featureGates -}}{{ $k }}={{ $v }},{{- end -}}
{{- end -}}

{{/* Namespaces that get per-namespace RBAC: the release namespace plus ADDITIONAL_NAMESPACES (§1.5). */}}
{{- define "drv.namespaces" -}}
{{- $list := list (include "drv.namespace" .) -}}
{{- range .Values.controller.containers.computeDomain.env -}}
{{- if eq .name "ADDITIONAL_NAMESPACES" -}}
{{- range splitList "," .value -}}{{- if . -}}{{- $list = append $list (trim .) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- join "," (uniq $list) -}}
{{- end -}}

{{/* IMEX mode/isolation checks (§1.6), used where compute domains render. */}}
{{- define "drv.validateIMEX" -}}
{{- $imex := .Values.resources.computeDomains.imex -}}
{{- if eq $imex.mode "hostManaged" -}}
{{- if not (index .Values.featureGates "HostManagedIMEXDaemon") -}}
{{- fail "resources.computeDomains.imex.mode=hostManaged requires featureGates.HostManagedIMEXDaemon=true" -}}
{{- end -}}
{{- else if ne $imex.mode "driverManaged" -}}
{{- fail (printf "unknown resources.computeDomains.imex.mode %q: must be \"driverManaged\" or \"hostManaged\"" $imex.mode) -}}
{{- end -}}
{{- if eq $imex.isolation "channel" -}}
{{- fail "resources.computeDomains.imex.isolation=channel is not supported yet: per-workload IMEX channel allocation is not implemented. Use the default, \"domain\"." -}}
{{- else if ne $imex.isolation "domain" -}}
{{- fail (printf "unknown resources.computeDomains.imex.isolation %q: must be \"domain\" or \"channel\"" $imex.isolation) -}}
{{- end -}}
{{- end -}}
