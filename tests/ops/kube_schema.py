"""A small schema of the keys allowed at each level of the KubeRay manifests in ``cluster/kuberay/``.

Sources (field names only, as JSON keys):

* KubeRay ``ray.io/v1`` CRDs: ``ray-operator/apis/ray/v1/rayjob_types.go`` and ``raycluster_types.go`` in
  ray-project/kuberay, and the generated reference ``docs/reference/api.md`` (RayJobSpec, RayClusterSpec,
  HeadGroupSpec, WorkerGroupSpec, AutoscalerOptions, SubmitterConfig, DeletionStrategy, GcsFaultToleranceOptions);
  ``authOptions`` from the KubeRay CRD API reference on docs.ray.io (KubeRay >= v1.5.1).
* Kubernetes networking.k8s.io/v1 NetworkPolicy (API reference v1.28): spec, ingress rules, peers, ports.
* Kubernetes core/v1 (API reference v1.28): the subset of PodTemplateSpec, PodSpec, Container, EnvVar,
  SecurityContext, Volume, ... that a Ray pod template uses; a key outside it is reported so a reviewer
  checks it against the Kubernetes API rather than letting a typo through.

``check(obj, kind)`` returns the dotted paths of unknown keys (empty when the object fits).
"""

from __future__ import annotations

from typing import Any

LEAF = None  # a scalar, or a free-form map/list (labels, rayStartParams, resource quantities)


def _list(kind: str) -> tuple[str, str]:
    return ("list", kind)


SCHEMA: dict[str, dict[str, Any]] = {
    # ---- top-level objects
    "RayCluster": {"apiVersion": LEAF, "kind": LEAF, "metadata": "ObjectMeta", "spec": "RayClusterSpec"},
    "RayJob": {"apiVersion": LEAF, "kind": LEAF, "metadata": "ObjectMeta", "spec": "RayJobSpec"},
    "ServiceAccount": {
        "apiVersion": LEAF,
        "kind": LEAF,
        "metadata": "ObjectMeta",
        "automountServiceAccountToken": LEAF,
        "imagePullSecrets": LEAF,
    },
    "NetworkPolicy": {
        "apiVersion": LEAF,
        "kind": LEAF,
        "metadata": "ObjectMeta",
        "spec": "NetworkPolicySpec",
    },
    # ---- Kubernetes networking.k8s.io/v1
    "NetworkPolicySpec": {
        "podSelector": "LabelSelector",
        "policyTypes": LEAF,
        "ingress": _list("NetworkPolicyIngressRule"),
        "egress": LEAF,
    },
    "NetworkPolicyIngressRule": {"from": _list("NetworkPolicyPeer"), "ports": _list("NetworkPolicyPort")},
    "NetworkPolicyPeer": {
        "podSelector": "LabelSelector",
        "namespaceSelector": "LabelSelector",
        "ipBlock": LEAF,
    },
    "NetworkPolicyPort": {"protocol": LEAF, "port": LEAF, "endPort": LEAF},
    "LabelSelector": {"matchLabels": LEAF, "matchExpressions": LEAF},
    "ObjectMeta": {"name": LEAF, "namespace": LEAF, "labels": LEAF, "annotations": LEAF},
    # ---- KubeRay ray.io/v1
    "RayJobSpec": {
        "activeDeadlineSeconds": LEAF,
        "backoffLimit": LEAF,
        "rayClusterSpec": "RayClusterSpec",
        "submitterPodTemplate": "PodTemplateSpec",
        "metadata": LEAF,
        "clusterSelector": LEAF,
        "submitterConfig": "SubmitterConfig",
        "managedBy": LEAF,
        "deletionStrategy": "DeletionStrategy",
        "entrypoint": LEAF,
        "runtimeEnvYAML": LEAF,
        "jobId": LEAF,
        "submissionMode": LEAF,
        "entrypointResources": LEAF,
        "entrypointNumCpus": LEAF,
        "entrypointNumGpus": LEAF,
        "ttlSecondsAfterFinished": LEAF,
        "shutdownAfterJobFinishes": LEAF,
        "suspend": LEAF,
    },
    "SubmitterConfig": {"backoffLimit": LEAF},
    "DeletionStrategy": {"onSuccess": "DeletionPolicy", "onFailure": "DeletionPolicy"},
    "DeletionPolicy": {"policy": LEAF},
    "RayClusterSpec": {
        "suspend": LEAF,
        "managedBy": LEAF,
        "autoscalerOptions": "AutoscalerOptions",
        "headServiceAnnotations": LEAF,
        "enableInTreeAutoscaling": LEAF,
        "gcsFaultToleranceOptions": LEAF,
        "headGroupSpec": "HeadGroupSpec",
        "rayVersion": LEAF,
        "workerGroupSpecs": _list("WorkerGroupSpec"),
        "authOptions": "AuthOptions",
    },
    "AuthOptions": {"mode": LEAF, "secretName": LEAF},
    "AutoscalerOptions": {
        "resources": "ResourceRequirements",
        "image": LEAF,
        "imagePullPolicy": LEAF,
        "securityContext": "SecurityContext",
        "idleTimeoutSeconds": LEAF,
        "upscalingMode": LEAF,
        "version": LEAF,
        "env": _list("EnvVar"),
        "envFrom": LEAF,
        "volumeMounts": _list("VolumeMount"),
    },
    "HeadGroupSpec": {
        "template": "PodTemplateSpec",
        "headService": "Service",
        "enableIngress": LEAF,
        "rayStartParams": LEAF,
        "serviceType": LEAF,
    },
    "WorkerGroupSpec": {
        "suspend": LEAF,
        "groupName": LEAF,
        "replicas": LEAF,
        "minReplicas": LEAF,
        "maxReplicas": LEAF,
        "idleTimeoutSeconds": LEAF,
        "rayStartParams": LEAF,
        "template": "PodTemplateSpec",
        "scaleStrategy": LEAF,
        "numOfHosts": LEAF,
    },
    # ---- Kubernetes core/v1 (subset)
    "Service": {"metadata": "ObjectMeta", "spec": "ServiceSpec"},
    "ServiceSpec": {"type": LEAF, "ports": LEAF, "selector": LEAF},
    "PodTemplateSpec": {"metadata": "ObjectMeta", "spec": "PodSpec"},
    "PodSpec": {
        "containers": _list("Container"),
        "initContainers": _list("Container"),
        "volumes": _list("Volume"),
        "serviceAccountName": LEAF,
        "automountServiceAccountToken": LEAF,
        "securityContext": "PodSecurityContext",
        "nodeSelector": LEAF,
        "tolerations": _list("Toleration"),
        "affinity": LEAF,
        "restartPolicy": LEAF,
        "terminationGracePeriodSeconds": LEAF,
        "imagePullSecrets": LEAF,
        "priorityClassName": LEAF,
    },
    "Container": {
        "name": LEAF,
        "image": LEAF,
        "imagePullPolicy": LEAF,
        "command": LEAF,
        "args": LEAF,
        "workingDir": LEAF,
        "env": _list("EnvVar"),
        "envFrom": LEAF,
        "ports": _list("ContainerPort"),
        "resources": "ResourceRequirements",
        "volumeMounts": _list("VolumeMount"),
        "securityContext": "SecurityContext",
        "lifecycle": LEAF,
        "readinessProbe": LEAF,
        "livenessProbe": LEAF,
    },
    "ContainerPort": {"containerPort": LEAF, "name": LEAF, "protocol": LEAF},
    "EnvVar": {"name": LEAF, "value": LEAF, "valueFrom": "EnvVarSource"},
    "EnvVarSource": {
        "secretKeyRef": "KeySelector",
        "configMapKeyRef": "KeySelector",
        "fieldRef": LEAF,
        "resourceFieldRef": LEAF,
    },
    "KeySelector": {"name": LEAF, "key": LEAF, "optional": LEAF},
    "ResourceRequirements": {"limits": LEAF, "requests": LEAF},
    "PodSecurityContext": {
        "runAsUser": LEAF,
        "runAsGroup": LEAF,
        "runAsNonRoot": LEAF,
        "fsGroup": LEAF,
        "supplementalGroups": LEAF,
        "seccompProfile": "SeccompProfile",
    },
    "SecurityContext": {
        "runAsUser": LEAF,
        "runAsGroup": LEAF,
        "runAsNonRoot": LEAF,
        "allowPrivilegeEscalation": LEAF,
        "privileged": LEAF,
        "readOnlyRootFilesystem": LEAF,
        "capabilities": "Capabilities",
        "seccompProfile": "SeccompProfile",
    },
    "Capabilities": {"add": LEAF, "drop": LEAF},
    "SeccompProfile": {"type": LEAF, "localhostProfile": LEAF},
    "Volume": {
        "name": LEAF,
        "emptyDir": "EmptyDirVolumeSource",
        "configMap": LEAF,
        "secret": LEAF,
        "persistentVolumeClaim": LEAF,
        "projected": "ProjectedVolumeSource",
    },
    "ProjectedVolumeSource": {"sources": LEAF, "defaultMode": LEAF},
    "EmptyDirVolumeSource": {"medium": LEAF, "sizeLimit": LEAF},
    "VolumeMount": {"name": LEAF, "mountPath": LEAF, "readOnly": LEAF, "subPath": LEAF},
    "Toleration": {"key": LEAF, "operator": LEAF, "value": LEAF, "effect": LEAF, "tolerationSeconds": LEAF},
}


def check(obj: Any, kind: str, path: str = "") -> list[str]:
    """Dotted paths of the keys of ``obj`` (a ``kind`` object) that ``SCHEMA`` does not allow."""
    fields = SCHEMA[kind]
    if not isinstance(obj, dict):
        return [f"{path or kind}: expected a mapping, got {type(obj).__name__}"]
    problems = []
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            problems.append(f"{where}: not a field of {kind}")
            continue
        child = fields[key]
        if child is LEAF:
            continue
        if isinstance(child, tuple):
            if not isinstance(value, list):
                problems.append(f"{where}: expected a list of {child[1]}")
                continue
            for i, item in enumerate(value):
                problems += check(item, child[1], f"{where}[{i}]")
        else:
            problems += check(value, child, where)
    return problems
