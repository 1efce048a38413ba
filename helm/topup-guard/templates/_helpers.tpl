{{/*
Names. The chart name is also spelled out as a fallback so the sidecar templates work when a
parent chart calls them with a hand-made context (dict "Values" ... "Release" .Release), which
has no .Chart.
*/}}
{{- define "topup-guard.name" -}}
{{- $chart := .Chart | default (dict "Name" "topup-guard") -}}
{{- default $chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "topup-guard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "topup-guard.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "topup-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "topup-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "topup-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "topup-guard.labels" -}}
helm.sh/chart: {{ include "topup-guard.chart" . }}
{{ include "topup-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "topup-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "topup-guard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "topup-guard.secretName" -}}
{{- default (include "topup-guard.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "topup-guard.configMapName" -}}
{{- include "topup-guard.fullname" . -}}
{{- end -}}

{{- define "topup-guard.image" -}}
{{- $chart := .Chart | default (dict) -}}
{{- $tag := .Values.image.tag | default $chart.AppVersion | default "" | toString -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else if $tag -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- else -}}
{{- fail "topup-guard: set image.tag or image.digest (no chart appVersion in this context)" -}}
{{- end -}}
{{- end -}}

{{/* "true" when several guards coordinate through Redis (so more than one may run). */}}
{{- define "topup-guard.coordinated" -}}
{{- if or .Values.redis.url .Values.redis.urlInExistingSecret -}}true{{- end -}}
{{- end -}}

{{/* "true" when the signal endpoint listens on a loopback address (or is off). */}}
{{- define "topup-guard.signalLoopback" -}}
{{- $host := toString .Values.signal.host -}}
{{- if or (eq (int .Values.signal.port) 0) (eq $host "localhost") (eq $host "::1") (hasPrefix "127." $host) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the standalone pod should publish the signal port (a non-loopback address). */}}
{{- define "topup-guard.signalExposed" -}}
{{- if and (eq .Values.mode "standalone") (not (include "topup-guard.signalLoopback" .)) -}}true{{- end -}}
{{- end -}}

{{/*
Refuse configurations that could spend money twice or lose the ledger's protection. Called by
every template that renders a workload or its configuration, and by the sidecar templates.
*/}}
{{- define "topup-guard.validate" -}}
{{- $coordinated := include "topup-guard.coordinated" . -}}
{{- if and (eq .Values.mode "standalone") (gt (int .Values.replicaCount) 1) (not $coordinated) -}}
{{- fail (printf "topup-guard: replicaCount=%d needs Redis coordination (set redis.url, or redis.urlInExistingSecret=true with existingSecret): without it several guards could each top up" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (gt (int .Values.sidecar.replicas) 1) (not $coordinated) -}}
{{- fail (printf "topup-guard: sidecar.replicas=%d (your Deployment's replicas) needs Redis coordination (set redis.url, or redis.urlInExistingSecret=true with existingSecret): without it every replica's guard could top up" (int .Values.sidecar.replicas)) -}}
{{- end -}}
{{- if and (eq .Values.mode "standalone") (gt (int .Values.replicaCount) 1) .Values.persistence.enabled -}}
{{- fail "topup-guard: persistence.enabled with replicaCount > 1 would share one SQLite ledger file between pods; with Redis coordination use the default emptyDir (persistence.enabled=false)" -}}
{{- end -}}
{{- if and .Values.redis.urlInExistingSecret (not .Values.existingSecret) -}}
{{- fail "topup-guard: redis.urlInExistingSecret=true needs existingSecret" -}}
{{- end -}}
{{- $n := .Values.notifications -}}
{{- if and .Values.existingSecret (or .Values.vonage.apiKey .Values.vonage.apiSecret .Values.vonage.trx .Values.slack.token .Values.slack.webhookUrl .Values.redis.url $n.webhook.url $n.webhook.secret $n.pagerduty.routingKey .Values.signal.token) -}}
{{- fail "topup-guard: existingSecret is set, so leave vonage.apiKey, vonage.apiSecret, vonage.trx, slack.token, slack.webhookUrl, redis.url, notifications.webhook.url, notifications.webhook.secret, notifications.pagerduty.routingKey and signal.token empty (put them in that Secret)" -}}
{{- end -}}
{{- if and .Values.signal.tokenInExistingSecret (not .Values.existingSecret) -}}
{{- fail "topup-guard: signal.tokenInExistingSecret=true needs existingSecret" -}}
{{- end -}}
{{- if and (eq .Values.mode "standalone") (not (include "topup-guard.signalLoopback" .)) (not .Values.signal.token) (not .Values.signal.tokenInExistingSecret) -}}
{{- fail (printf "topup-guard: signal.host=%s is not loopback, so it needs signal.token (or signal.tokenInExistingSecret=true): anyone who reaches the port could post balances" (toString .Values.signal.host)) -}}
{{- end -}}
{{- if and .Values.slack.token (not .Values.slack.channel) -}}
{{- fail "topup-guard: slack.token needs slack.channel" -}}
{{- end -}}
{{- if gt (float64 .Values.policy.pollMin) (float64 .Values.policy.pollInterval) -}}
{{- fail "topup-guard: policy.pollMin must not exceed policy.pollInterval" -}}
{{- end -}}
{{- end -}}

{{- define "topup-guard.requireSidecarMode" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "topup-guard: the sidecar templates need mode=sidecar (in standalone mode the chart also runs its own Deployment, and two uncoordinated guards could both top up)" -}}
{{- end -}}
{{- end -}}

{{/*
When the caller passes its real replica count ("Replicas" in the dict), check that too: it is the
number that matters, sidecar.replicas is only the caller's promise.
*/}}
{{- define "topup-guard.validateReplicas" -}}
{{- if and (kindIs "map" .) (hasKey . "Replicas") -}}
{{- if and (gt (int .Replicas) 1) (not (include "topup-guard.coordinated" .)) -}}
{{- fail (printf "topup-guard: your Deployment has %d replicas, which needs Redis coordination (set redis.url, or redis.urlInExistingSecret=true with existingSecret): without it every replica's guard could top up" (int .Replicas)) -}}
{{- end -}}
{{- if gt (int .Replicas) (int .Values.sidecar.replicas) -}}
{{- fail (printf "topup-guard: your Deployment has %d replicas but sidecar.replicas is %d; keep them equal" (int .Replicas) (int .Values.sidecar.replicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes the guard container mounts; standalone pods and sidecar users both add these. */}}
{{- define "topup-guard.sidecarVolumes" -}}
{{- include "topup-guard.requireSidecarMode" . -}}
{{- include "topup-guard.validate" . -}}
{{ include "topup-guard.volumes" . }}
{{- end -}}

{{- define "topup-guard.volumes" -}}
- name: topup-guard-ledger
{{- if and .Values.persistence.enabled (eq .Values.mode "standalone") }}
  persistentVolumeClaim:
    claimName: {{ default (include "topup-guard.fullname" .) .Values.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: topup-guard-tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/*
The guard container. Parameters: dict "ctx" (the chart context), "name", "native" (render
restartPolicy: Always for initContainers), "readiness" (add the /readyz probe), "sidecar" (pin
the signal endpoint to loopback).
*/}}
{{- define "topup-guard.container" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
- name: {{ .name }}
  image: {{ include "topup-guard.image" $ctx | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
  ports:
    - name: tg-health
      containerPort: {{ int $v.health.port }}
      protocol: TCP
    {{- if and (not .sidecar) (include "topup-guard.signalExposed" $ctx) }}
    - name: tg-signal
      containerPort: {{ int $v.signal.port }}
      protocol: TCP
    {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "topup-guard.configMapName" $ctx }}
    - secretRef:
        name: {{ include "topup-guard.secretName" $ctx }}
  env:
    # The environment label of every notification (TOPUP_GUARD_ENVIRONMENT overrides it); the
    # service-account token, which would also carry the namespace, is not mounted.
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if .sidecar }}
    # The signal endpoint of a sidecar is for the app in this pod only: loopback, whatever the
    # ConfigMap says (an env entry wins over envFrom). No containerPort: nothing outside uses it.
    - name: TOPUP_GUARD_SIGNAL_HOST
      value: "127.0.0.1"
    {{- end }}
  livenessProbe:
    httpGet:
      path: /livez
      port: tg-health
    {{- toYaml $v.probes.liveness | nindent 4 }}
  {{- if .readiness }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: tg-health
    {{- toYaml $v.probes.readiness | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: topup-guard-ledger
      mountPath: {{ $v.persistence.mountPath }}
    - name: topup-guard-tmp
      mountPath: /tmp
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
The sidecar container for YOUR Deployment. Call it with this chart's values and your release:
  {{- include "topup-guard.sidecarContainer" (dict "Values" (index .Values "topup-guard") "Release" .Release "Replicas" .Values.replicas) | nindent 8 }}
under `containers:` (or under `initContainers:` with sidecar.native=true). No readiness probe:
a sidecar's readiness gates your pod's, and the guard being unready (say Vonage unreachable) must
not take your app out of its Service.
*/}}
{{- define "topup-guard.sidecarContainer" -}}
{{- include "topup-guard.requireSidecarMode" . -}}
{{- include "topup-guard.validate" . -}}
{{- include "topup-guard.validateReplicas" . -}}
{{- include "topup-guard.container" (dict "ctx" . "name" .Values.sidecar.containerName "native" .Values.sidecar.native "readiness" false "sidecar" true) -}}
{{- end -}}

{{/*
The Prometheus job label the chart's ServiceMonitor and PodMonitor give the guard's series (both
set it explicitly, so it is the same in either mode), and the label matchers the shipped rules use.
*/}}
{{- define "topup-guard.metricsJob" -}}
{{- include "topup-guard.fullname" . -}}
{{- end -}}

{{- define "topup-guard.metricSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{- .Values.prometheusRule.selector -}}
{{- else -}}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "topup-guard.metricsJob" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuse monitoring setups that would scrape nothing, or every series twice. */}}
{{- define "topup-guard.validateMonitoring" -}}
{{- if and .Values.podMonitor.enabled (eq .Values.mode "sidecar") (not .Values.podMonitor.selector) -}}
{{- fail "topup-guard: podMonitor.enabled in sidecar mode needs podMonitor.selector (the labels of YOUR pods that carry the sidecar)" -}}
{{- end -}}
{{- if and .Values.podMonitor.enabled .Values.serviceMonitor.enabled (eq .Values.mode "standalone") -}}
{{- fail "topup-guard: enable serviceMonitor or podMonitor, not both: every series would be scraped twice" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (eq .Values.mode "sidecar") -}}
{{- fail "topup-guard: serviceMonitor needs mode=standalone (the chart's Service); in sidecar mode use podMonitor" -}}
{{- end -}}
{{- end -}}
