{{/* The release's name for this chart, at most 63 characters (a DNS label). */}}
{{- define "signalbox.fullname" -}}
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

{{- define "signalbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release, without the component. */}}
{{- define "signalbox.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "signalbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels on Signalbox's own objects. */}}
{{- define "signalbox.labels" -}}
{{ include "signalbox.baseLabels" . }}
app.kubernetes.io/component: decision-service
{{- end -}}

{{/* What the Services and the PodDisruptionBudget select Signalbox's pods by. */}}
{{- define "signalbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signalbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: decision-service
{{- end -}}

{{/* What the example Envoy's Service selects its pods by. */}}
{{- define "signalbox.envoySelectorLabels" -}}
app.kubernetes.io/name: {{ include "signalbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "signalbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "signalbox.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
server.workers: the value given, or the CPU limit rounded up ("1500m" and "1.5" are 2), at least
1, written into the config so it shows what runs (Signalbox's `auto` reads the same limit from
the pod's cgroup).
*/}}
{{- define "signalbox.workers" -}}
{{- if .Values.workers -}}
{{- int .Values.workers -}}
{{- else -}}
{{- $cpu := toString (dig "limits" "cpu" "1" .Values.resources) -}}
{{- $n := 1 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $n = div (add (atoi (trimSuffix "m" $cpu)) 999) 1000 -}}
{{- else -}}
{{- $n = int (ceil (float64 $cpu)) -}}
{{- end -}}
{{- max 1 $n -}}
{{- end -}}
{{- end -}}

{{/* Where the chart mounts things in the container. */}}
{{- define "signalbox.paths" -}}
config: /etc/signalbox/config
jwks: /etc/signalbox/jwks
vault: /etc/signalbox/vault
tls: /etc/signalbox/tls
data: /var/lib/signalbox
{{- end -}}

{{/*
The configuration document: the chart's defaults, then `config` from the values, then what the
chart wires (listeners, workers, mounted paths), which the values cannot contradict.
*/}}
{{- define "signalbox.config" -}}
{{- $paths := include "signalbox.paths" . | fromYaml -}}
{{- $defaults := dict
  "audit" (dict "path" (printf "%s/audit/${POD_NAME}/decisions.jsonl" $paths.data))
  "vault" (dict "file" (printf "%s/vault/credentials.json" $paths.data)) -}}
{{- $wired := dict "server" (dict
  "grpc_addr" "0.0.0.0:9191"
  "http_addr" "0.0.0.0:8181"
  "workers" (include "signalbox.workers" . | int)) -}}
{{- if .Values.identity.jwksSecret -}}
{{- $_ := set $wired "identity" (dict "jwks_file" (printf "%s/%s" $paths.jwks .Values.identity.jwksSecretKey)) -}}
{{- end -}}
{{- if .Values.vault.fileSecret -}}
{{- $_ := set $wired "vault" (dict "file" (printf "%s/%s" $paths.vault .Values.vault.fileSecretKey)) -}}
{{- end -}}
{{- if .Values.redis.urlSecret -}}
{{- $_ := set $wired "store" (dict "type" "redis") -}}
{{- end -}}
{{- $config := mustMergeOverwrite $defaults (deepCopy (.Values.config | default dict)) $wired -}}
{{- /* A downloaded bundle's last good copy must land on the writable volume. */ -}}
{{- $service := dig "policy" "service" nil $config -}}
{{- if and $service (not (hasKey $service "persist_file")) -}}
{{- $_ := set $service "persist_file" (printf "%s/bundles/signalbox.tar.gz" $paths.data) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
