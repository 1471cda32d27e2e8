{{/*
The chart name, or nameOverride. Label values and names are capped at 63 characters.
*/}}
{{- define "tributary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: the release name, prefixed to the chart name unless it
already contains it, so `helm install tributary` gives `tributary`, not `tributary-tributary`.
*/}}
{{- define "tributary.fullname" -}}
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

{{/*
The chart label: name and version, `+` being invalid in label values.
*/}}
{{- define "tributary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object the chart creates. `managed-by` says Helm: the objects the operator
itself creates carry `managed-by: tributary`, and its informers select on that.
*/}}
{{- define "tributary.labels" -}}
helm.sh/chart: {{ include "tributary.chart" . }}
{{ include "tributary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tributary
{{- end }}

{{/*
The stable subset of the labels that selects the operator pods; never change it after a
release, a Deployment's selector is immutable.
*/}}
{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tributary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "tributary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tributary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image of the operator and of every pod it spawns.
*/}}
{{- define "tributary.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The Lease the replicas compete for: one per release, so two releases never share a leader.
*/}}
{{- define "tributary.leaseName" -}}
{{- printf "%s-operator" (include "tributary.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
What the operator may do in the namespaces it watches; the same rules whether they are
granted cluster-wide (ClusterRole) or namespace by namespace (Role). Each verb is one the
operator's code uses:
- get/list/watch: the informers (list + watch) and reads by name;
- patch: server-side apply, merge patches of finalizers and events;
- create: server-side apply of a child that does not exist yet is authorised as a create;
- update on <resource>/finalizers: setting blockOwnerDeletion on a child's owner reference
  needs it where the OwnerReferencesPermissionEnforcement admission plugin is on;
- delete: pruning, on the kinds pruned only. A child the spec no longer asks for (a removed or
  renamed sink's Deployment, a removed collector's Service, a BlockPool's rack table without
  rackAwareness) is deleted; the rest go with their owner by garbage collection.
Claims are never deleted (they hold data), nor pods or Secrets.
*/}}
{{- define "tributary.rules" -}}
- apiGroups: ["tributary.dev"]
  resources: ["topics", "cdcstreams", "videocollectors", "blockpools", "yarnqueues", "dags"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tributary.dev"]
  resources:
    - topics/status
    - cdcstreams/status
    - videocollectors/status
    - blockpools/status
    - yarnqueues/status
    - dags/status
  verbs: ["get", "patch"]
- apiGroups: ["tributary.dev"]
  resources:
    - topics/finalizers
    - cdcstreams/finalizers
    - videocollectors/finalizers
    - blockpools/finalizers
    - yarnqueues/finalizers
    - dags/finalizers
  verbs: ["update"]
# The children: workloads, their Services and ConfigMaps, and their disruption budgets.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- /* A BlockPool's NetworkPolicy: applied, watched as an owned kind, pruned when spec.networkPolicy.enabled is false. */}}
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# A CDCStream's scheduled snapshots: one Job created per scheduled time (never applied, never
# pruned); a finished Job goes by its ttlSecondsAfterFinished, or with its CDCStream.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# Read only: pods are made by the StatefulSet and Deployment controllers; the operator reads
# them to report what runs and, for rack awareness, where each data node is scheduled.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Per-pod claims come from StatefulSets; the operator itself makes the BlockPool's shared
# edit-log claim that the active and standby name nodes both mount. No delete: a claim holds
# data, and goes with its owner (deletionPolicy Delete) or stays (Retain).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Get: credentials a resource references (broker TLS and SASL Secrets), read by name at each
# reconcile, and a BlockPool's cluster secret, which signs the operator's calls to its name
# nodes. Create: that cluster secret, made once when absent (never updated: pods hold it).
# No list or watch: nothing needs every Secret of a namespace in its cache.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# A Dag whose tasks run as Kubernetes Jobs gets a ServiceAccount for its workers and a Role that
# lets them create and follow Jobs and read their pods' logs; the operator may only grant what it
# holds, hence jobs and pods/log here (it never runs Jobs itself).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# A repeated event bumps the series count of the first one with a patch.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads, granted by a ClusterRole whatever namespaces are watched: a BlockPool with
rackAwareness puts each data node in the zone (a label) of the node its pod runs on.
*/}}
{{- define "tributary.clusterRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}
