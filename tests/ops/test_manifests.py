"""Static checks of ``cluster/`` (KubeRay manifests, cluster launcher config, image) against their sources of
truth: the KubeRay CRD field names (``kube_schema.py``), ``jobs/entrypoints.py``, ``jobs/runtime_env.yaml``,
pyproject's dependencies and the installed Ray. Fast, no cluster, no Ray started."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from kube_schema import check
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobs.entrypoints import ENTRYPOINTS, TRAIN, submit_command  # noqa: E402

KUBERAY = REPO / "cluster" / "kuberay"
IMAGE = REPO / "cluster" / "image"
LAUNCHER = REPO / "cluster" / "launcher" / "aws.yaml"
SECRET_WORDS = {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "KEY"}


def _secret_like(name: str) -> bool:
    """RAY_AUTH_TOKEN, HF_TOKEN, AWS_SECRET_ACCESS_KEY, WANDB_API_KEY ... (not TOKENIZERS_PARALLELISM)."""
    return bool(set(name.upper().split("_")) & SECRET_WORDS)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


MANIFESTS = sorted(KUBERAY.glob("*.yaml"))
OBJECTS = [(p.name, i, d) for p in MANIFESTS for i, d in enumerate(_docs(p))]


def _by_kind(kind: str) -> list[tuple[str, dict]]:
    return [(name, d) for name, _, d in OBJECTS if d.get("kind") == kind]


def _cluster_specs() -> list[tuple[str, dict]]:
    specs = [(name, d["spec"]) for name, d in _by_kind("RayCluster")]
    specs += [(f"{name}:rayClusterSpec", d["spec"]["rayClusterSpec"]) for name, d in _by_kind("RayJob")]
    return specs


def _templates() -> list[tuple[str, dict]]:
    """(where, pod template) of every pod the manifests start: heads, worker groups, job submitters."""
    templates = []
    for where, spec in _cluster_specs():
        templates.append((f"{where}.head", spec["headGroupSpec"]["template"]))
        for group in spec.get("workerGroupSpecs", []):
            templates.append((f"{where}.{group['groupName']}", group["template"]))
    for name, d in _by_kind("RayJob"):
        if "submitterPodTemplate" in d["spec"]:
            templates.append((f"{name}.submitter", d["spec"]["submitterPodTemplate"]))
    return templates


def _pod_templates() -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod the manifests start: heads, worker groups, job submitters."""
    return [(where, template["spec"]) for where, template in _templates()]


def _containers() -> list[tuple[str, dict, dict]]:
    return [
        (f"{where}/{c['name']}", c, pod)
        for where, pod in _pod_templates()
        for c in pod.get("containers", []) + pod.get("initContainers", [])
    ]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(path: Path) -> list[Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [Requirement(line) for line in lines if line]


def _key(req: Requirement) -> tuple:
    return canonicalize_name(req.name), frozenset(req.extras), str(req.specifier), str(req.marker or "")


# ------------------------------------------------------------------------------------------ parsing


def test_every_manifest_parses_and_is_known():
    assert {p.name for p in MANIFESTS} >= {"raycluster.yaml", "rayjob-train.yaml", "rayjob-tune.yaml"}
    for name, i, doc in OBJECTS:
        assert doc.get("kind") in {"RayCluster", "RayJob", "ServiceAccount", "NetworkPolicy"}, (name, i)
        expected_api = {"ServiceAccount": "v1", "NetworkPolicy": "networking.k8s.io/v1"}.get(
            doc["kind"], "ray.io/v1"
        )
        assert doc["apiVersion"] == expected_api, name


@pytest.mark.parametrize("name,index,doc", OBJECTS, ids=[f"{n}[{i}]" for n, i, _ in OBJECTS])
def test_fields_are_kuberay_v1_crd_fields(name, index, doc):
    assert check(doc, doc["kind"]) == []


def test_schema_check_rejects_a_misspelled_field():
    _, job = _by_kind("RayJob")[0]
    bad = copy.deepcopy(job)
    bad["spec"]["shutdownAfterJobFinish"] = bad["spec"].pop("shutdownAfterJobFinishes")
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert sorted(check(bad, "RayJob")) == [
        "spec.rayClusterSpec.workerGroupSpecs[0].maxReplica: not a field of WorkerGroupSpec",
        "spec.shutdownAfterJobFinish: not a field of RayJobSpec",
    ]


# ------------------------------------------------------------------------------------------ RayJobs


def test_rayjob_entrypoints_are_the_job_commands():
    jobs = {d["metadata"]["name"]: d["spec"] for _, d in _by_kind("RayJob")}
    assert jobs["raystx-train"]["entrypoint"] == ENTRYPOINTS["train"]
    assert jobs["raystx-tune"]["entrypoint"] == ENTRYPOINTS["tune"]
    assert TRAIN == "python jobs/train.py --config jobs/configs/train.yaml"


def test_rayjobs_run_on_the_raycluster_spec():
    (_, cluster), *_ = _by_kind("RayCluster")
    for name, job in _by_kind("RayJob"):
        assert job["spec"]["rayClusterSpec"] == cluster["spec"], name


def test_rayjob_lifecycle_and_submission_settings():
    for name, job in _by_kind("RayJob"):
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, name
        assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
        assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 0
        assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode"}
        assert spec["entrypointNumCpus"] == 1  # as `ray job submit --entrypoint-num-cpus 1` (jobs/README.md)
        submitter = spec["submitterPodTemplate"]["spec"]
        assert submitter["restartPolicy"] == "Never"
        assert (
            "command" not in submitter["containers"][0]
        )  # KubeRay fills in `ray job submit ... -- entrypoint`


def test_rayjob_runtime_env_matches_jobs_runtime_env_and_the_image():
    base = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    workdir = re.findall(r"^WORKDIR\s+(\S+)", (IMAGE / "Dockerfile").read_text(), re.MULTILINE)[-1]
    for name, job in _by_kind("RayJob"):
        runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
        assert runtime_env["working_dir"] == workdir, name  # the entry points and configs live there
        env = runtime_env["env_vars"]
        assert {k: env.get(k) for k in base["env_vars"]} == base["env_vars"], name
        assert env["RAYSTX_STORAGE"].startswith(("s3://", "gs://")), name  # checkpoints on an object store
        assert env["RAYSTX_DATA_DIR"].startswith(("s3://", "gs://")), name
        assert "scaling.use_gpu=true" in env["RAYSTX_OVERRIDES"].split(), name
        assert not [k for k in env if _secret_like(k)], f"{name}: a secret in runtimeEnvYAML"
        assert "pip" not in runtime_env and "conda" not in runtime_env  # the image holds the dependencies


# ------------------------------------------------------------------------------------------ cluster


def test_gpu_worker_group_autoscales_within_bounds():
    for where, spec in _cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True, where
        gpu_groups = [
            g
            for g in spec["workerGroupSpecs"]
            if int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) > 0
        ]
        assert gpu_groups, f"{where}: no worker group with nvidia.com/gpu"
        for g in gpu_groups:
            assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"], where
            assert g["maxReplicas"] >= 1
            resources = g["template"]["spec"]["containers"][0]["resources"]
            assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]


def test_ray_version_matches_the_installed_ray_and_the_image():
    import ray

    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\S+)", (IMAGE / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None
    for where, spec in _cluster_specs():
        assert spec["rayVersion"] == ray.__version__, where
    assert base.group(1).startswith(f"{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}")
    ray_req = next(r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == "ray")
    assert ray_req.specifier.contains(ray.__version__)


def test_all_pods_use_the_project_image():
    version = _pyproject()["project"]["version"]
    images = {c["image"] for _, c, _ in _containers()}
    launcher = yaml.safe_load(LAUNCHER.read_text())
    images.add(launcher["docker"]["image"])
    assert len(images) == 1, images
    assert images.pop().endswith(f"/raystx:{version}")


# ------------------------------------------------------------------------------------------ security


def test_no_container_runs_as_root():
    for where, container, pod in _containers():
        pod_ctx, ctx = pod.get("securityContext", {}), container.get("securityContext", {})
        run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        run_as_user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        assert run_as_non_root is True, where
        assert run_as_user is not None and run_as_user != 0, where
        assert ctx.get("allowPrivilegeEscalation") is False, where
        assert not ctx.get("privileged", False), where
        assert "ALL" in ctx.get("capabilities", {}).get("drop", []), where
    for where, spec in _cluster_specs():
        ctx = spec["autoscalerOptions"]["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["allowPrivilegeEscalation"] is False, where


def test_dockerfile_ends_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (IMAGE / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_dashboard_is_not_exposed_outside_the_cluster():
    for where, spec in _cluster_specs():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", where
        assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP", where
        assert not head.get("enableIngress", False), where
    assert not [name for name, _, d in OBJECTS if d.get("kind") in {"Service", "Ingress"}]


def test_no_secret_value_inline_only_secret_key_refs():
    assert not [name for name, _, d in OBJECTS if d.get("kind") == "Secret"]
    containers = [c for _, c, _ in _containers()]
    containers += [spec["autoscalerOptions"] for _, spec in _cluster_specs()]
    for container in containers:
        for name, var in _env(container).items():
            if _secret_like(name):
                assert "value" not in var, f"{name} has an inline value"
                assert set(var["valueFrom"]) == {"secretKeyRef"}, name


def test_every_ray_container_uses_token_auth_from_the_secret():
    checked = [(w, c) for w, c, _ in _containers()]
    checked += [(f"{w}.autoscaler", spec["autoscalerOptions"]) for w, spec in _cluster_specs()]
    refs = set()
    for where, container in checked:
        env = _env(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token", where
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        refs.add((ref["name"], ref["key"]))
    assert refs == {("raystx-ray-auth", "auth_token")}  # the Secret cluster/README.md tells you to create


TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def _runtime_env_dirs() -> set[str]:
    """Local directories the RayJobs' runtime envs write to (RAYSTX_OUTPUT_DIR)."""
    dirs = set()
    for _, job in _by_kind("RayJob"):
        env = yaml.safe_load(job["spec"]["runtimeEnvYAML"]).get("env_vars", {})
        dirs |= {v for k, v in env.items() if k == "RAYSTX_OUTPUT_DIR" and v.startswith("/")}
    return dirs


def test_no_pod_mounts_the_kubernetes_api_token_except_the_autoscaler():
    (_, account), *_ = _by_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for where, pod in _pod_templates():
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod["containers"] + pod.get("initContainers", []):
            assert not [m for m in container.get("volumeMounts", []) if m["mountPath"] == TOKEN_PATH], where
    for where, spec in _cluster_specs():
        # the in-tree autoscaler sidecar scales the worker groups through the API: the token is projected for it only
        (mount,) = [m for m in spec["autoscalerOptions"]["volumeMounts"] if m["mountPath"] == TOKEN_PATH]
        assert mount["readOnly"] is True, where
        volumes = {v["name"]: v for v in spec["headGroupSpec"]["template"]["spec"]["volumes"]}
        sources = volumes[mount["name"]]["projected"]["sources"]
        assert {"path": "token", "expirationSeconds": 3607} in [s.get("serviceAccountToken") for s in sources]


def test_root_filesystems_are_read_only_with_writable_volumes_where_ray_writes():
    output_dirs = _runtime_env_dirs()
    assert output_dirs == {"/tmp/raystx"}
    for where, container, pod in _containers():
        assert container["securityContext"].get("readOnlyRootFilesystem") is True, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        needed = {"/tmp", "/home/ray/.cache"}  # temp files, staged data, HF/torch caches
        if not where.split("/")[0].endswith(".submitter"):
            needed |= {"/tmp/ray", "/home/ray/.config"}  # Ray sessions, logs, runtime envs; library configs
        assert needed <= set(mounts), (where, needed - set(mounts))
        for path in needed:
            mount = mounts[path]
            assert not mount.get("readOnly", False) and "emptyDir" in volumes[mount["name"]], (where, path)
        for directory in output_dirs:
            assert any(directory == m or directory.startswith(m.rstrip("/") + "/") for m in mounts), where


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # only matchLabels is used (and checked) here
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_admit_only_ray_pods_and_the_heads_clients():
    policies = {d["metadata"]["name"]: d["spec"] for _, d in _by_kind("NetworkPolicy")}
    assert set(policies) == {"raystx-ray-internal", "raystx-head-clients"}
    templates = _templates()
    for where, template in templates:
        labels = template["metadata"]["labels"]
        assert _selects(policies["raystx-ray-internal"]["podSelector"], labels), where
        head = _selects(policies["raystx-head-clients"]["podSelector"], labels)
        assert head == where.endswith(".head"), where
    for name, policy in policies.items():
        assert policy["policyTypes"] == ["Ingress"], name
        for rule in policy["ingress"]:
            assert rule.get("from"), f"{name}: a rule without `from` admits every source"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, name
                assert "podSelector" in peer and peer["podSelector"].get("matchLabels"), name
    (internal,) = policies["raystx-ray-internal"]["ingress"]
    assert internal["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "raystx"}}}]
    (clients,) = policies["raystx-head-clients"]["ingress"]
    assert {p["port"] for p in clients["ports"]} == {8265, 10001}  # job API/dashboard, Ray Client; not GCS
    peers = [peer["podSelector"]["matchLabels"] for peer in clients["from"]]
    assert peers == [{"raystx.io/ray-client": "true"}, {"app.kubernetes.io/name": "kuberay-operator"}]
    ray_ports = {p["containerPort"] for _, c, _ in _containers() for p in c.get("ports", [])}
    assert {8265, 10001} <= ray_ports


# ------------------------------------------------------------------------------------------ image


def test_image_requirements_are_pyprojects_runtime_dependencies():
    runtime = sorted(map(_key, map(Requirement, _pyproject()["project"]["dependencies"])))
    assert sorted(map(_key, _requirements(IMAGE / "requirements.txt"))) == runtime


def test_image_installs_the_models_the_job_configs_load():
    dev = {
        canonicalize_name(r.name): r
        for r in map(Requirement, _pyproject()["project"]["optional-dependencies"]["dev"])
    }
    models = {canonicalize_name(r.name): r for r in _requirements(IMAGE / "requirements-models.txt")}
    used = set()
    for config in (REPO / "jobs" / "configs").glob("*.yaml"):
        used |= set(re.findall(r"package:([A-Za-z0-9_.-]+)", config.read_text()))
    assert used, "no config loads a packaged model"
    for module in used:
        name = canonicalize_name(module)
        assert name in models, f"{module} is not in cluster/image/requirements-models.txt"
        assert _key(models[name]) == _key(dev[name])  # the pin of pyproject's dev extras
    dockerfile = (IMAGE / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "requirements-models.txt" in dockerfile


# ------------------------------------------------------------------------------------------ launcher


def test_cluster_launcher_config_fits_rays_schema():
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load(LAUNCHER.read_text())
    validate_config(config)
    bad = copy.deepcopy(config)
    bad["max_worker"] = bad.pop("max_workers")
    with pytest.raises(Exception, match="max_worker"):
        validate_config(bad)


def test_cluster_launcher_uses_token_auth_without_inline_token():
    config = yaml.safe_load(LAUNCHER.read_text())
    assert "~/.ray/auth_token" in config["file_mounts"].values()
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert "RAY_AUTH_TOKEN=" not in LAUNCHER.read_text()
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(t["max_workers"] >= 1 for t in workers)


# ------------------------------------------------------------------------------------------ docs


def test_readmes_give_the_exact_commands():
    jobs_readme = (REPO / "jobs" / "README.md").read_text()
    assert submit_command("http://127.0.0.1:8265", TRAIN) in jobs_readme
    cluster_readme = (REPO / "cluster" / "README.md").read_text()
    for path in [
        "cluster/kuberay/raycluster.yaml",
        "cluster/kuberay/rayjob-train.yaml",
        "cluster/launcher/aws.yaml",
    ]:
        assert path in cluster_readme
    assert "kubectl create secret generic raystx-ray-auth" in cluster_readme
