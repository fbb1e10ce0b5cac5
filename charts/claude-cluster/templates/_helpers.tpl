{{/* Names and labels. */}}
{{- define "cc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cc.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cc.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cc.stateSecret" -}}
{{- .Values.state.existingSecret | default (printf "%s-state" (include "cc.fullname" .)) -}}
{{- end -}}

{{- define "cc.credentialsSecret" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-credentials" (include "cc.fullname" .)) -}}
{{- end -}}

{{/* The grace Kubernetes gives a pod after SIGTERM: longer than the agent's own. */}}
{{- define "cc.terminationGrace" -}}
{{- add (ceil .Values.agent.stopGraceSeconds) .Values.agent.stopMarginSeconds -}}
{{- end -}}

{{/* One specialty's agent.yaml body (state and id come from the environment). Args: dict
     "root" $ "spec" <entry>. */}}
{{- define "cc.agentYaml" -}}
{{- $v := .root.Values -}}
{{- $base := dict
  "specialties" (.spec.specialties | default (list .spec.name))
  "max_tasks" (.spec.maxTasks | default 1)
  "workdir" "/opt/claude-cluster/workspace"
  "events_path" "/opt/claude-cluster/logs/events.jsonl"
  "metrics_port" $v.agent.metricsPort
  "stop_grace_seconds" $v.agent.stopGraceSeconds
  "executors" $v.agent.executors
  "sandbox" (merge (dict "mode" $v.sandbox.mode) (deepCopy ($v.sandbox.settings | default dict))) -}}
{{- $cfg := merge $base (deepCopy (.spec.settings | default dict)) (deepCopy $v.agent.settings) -}}
# Rendered by the claude-cluster Helm chart; state and id come from CLUSTER_AGENT_STATE and
# CLUSTER_AGENT_ID (the pod's name).
{{ toYaml $cfg }}
{{- end -}}

{{- define "cc.dashboardSecret" -}}
{{- .Values.dashboard.existingSecret | default (printf "%s-dashboard" (include "cc.fullname" .)) -}}
{{- end -}}
