"""The Helm chart, rendered and linted with Helm's own SDK, every manifest validated against Kubernetes 1.32's
schemas (strict), and the chart's invariants asserted on what it renders."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a test dependency (pip install -e '.[test]')")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is a test dependency")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "sovhub"
VALUES = {name: yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) for name in
          ("minimal", "production", "gpu")}
SECRET_ENV = ("SOVHUB_DATABASE_URL", "SOVHUB_SOVEREIGNTY__MASTER_KEY", "SOVHUB_SECRET_KEY", "SOVHUB_METRICS_TOKEN")
# Only the Prometheus operator's CRD: Kubernetes' own schemas do not describe it (checked by hand below).
CUSTOM_KINDS = {"ServiceMonitor"}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    out = helm.Chart.load(CHART).render(values, name="hub", namespace="ai")
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
            for d in docs if d["kind"] in ("Deployment", "Job")]


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUES[request.param])


def test_the_chart_lints_clean_with_every_values_file() -> None:
    for name, values in VALUES.items():
        report = helm.lint(CHART, values, strict=True, kube_version="v1.32.0")
        assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], (name, report)


def test_every_manifest_is_valid_kubernetes_1_32_strict(rendered) -> None:
    name, docs = rendered
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] in CUSTOM_KINDS:
            with pytest.raises(kv.SchemaNotFoundError):
                kv.validate(doc, "1.32", strict=True)
            continue
        try:
            kv.validate(doc, "1.32", strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} invalid at {list(exc.path)}: {exc.message}")
    assert {"Deployment", "Service", "ConfigMap", "Job", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_the_validator_would_catch_a_mistake() -> None:
    doc = of_kind(render(VALUES["minimal"]), "Deployment")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True  # misspelt: unknown field
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, "1.32", strict=True)


def test_every_pod_runs_unprivileged_on_a_read_only_root(rendered) -> None:
    name, docs = rendered
    specs = pod_specs(docs)
    assert specs
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["runAsNonRoot"] is True, where


def drain_of(name: str) -> int:
    return int(VALUES[name].get("drainSeconds", 20))


def test_the_gateway_has_its_probes_and_never_migrates(rendered) -> None:
    name, docs = rendered
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"]
                   == "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["timeoutSeconds"] == 5, "a busy replica is not taken out for a slow answer"
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < drain_of(name), "out before the listener closes"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--no-migrate" in container["args"] and container["args"][0] == "serve"
    env = {e["name"]: e for e in container["env"]}
    assert env["SOVHUB_MIGRATE_ON_START"]["value"] == "false"
    drain = VALUES[name].get("drainSeconds", 20)
    assert env["SOVHUB_SERVER__DRAIN_SECONDS"]["value"] == str(drain)
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/var/lib/sovhub", "/var/cache/sovhub", "/tmp", "/var/lib/sovhub-keys"} <= set(mounts)


def test_only_the_hook_job_migrates(rendered) -> None:
    _, docs = rendered
    jobs = of_kind(docs, "Job")
    assert len(jobs) == 1
    job = jobs[0]
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert script.splitlines()[0].strip() == "sovhub migrate"
    for where, spec in pod_specs(docs):
        if where.startswith("Job/"):
            continue
        for container in spec["containers"]:
            assert "migrate" not in " ".join(container.get("args", []) + container.get("command", [])).replace(
                "--no-migrate", ""), where


def test_secrets_only_by_reference(rendered) -> None:
    name, docs = rendered
    assert not of_kind(docs, "Secret"), "the chart must not create Secrets (their values would sit in Git)"
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"] in SECRET_ENV or "SECRET" in env["name"] or env["name"].startswith("UPSTREAM_KEY"):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (where, env)
    gateway = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in gateway["env"]} >= set(SECRET_ENV)
    config = of_kind(docs, "ConfigMap")[0]["data"]["sovhub.toml"]
    assert not re.search(r"secret|master_key|database_url|password|token", config), config


def test_the_config_map_is_a_configuration_sovhub_accepts(rendered, tmp_path) -> None:
    from sovhub.settings import load_settings

    name, docs = rendered
    text = of_kind(docs, "ConfigMap")[0]["data"]["sovhub.toml"]
    data_dir = tmp_path / name
    data_dir.mkdir()
    (data_dir / "sovhub.toml").write_text(text)
    settings = load_settings(data_dir=str(data_dir))
    assert settings.environment == VALUES[name].get("config", {}).get("environment", "production")
    assert tomllib.loads(text)  # and valid TOML for anyone else reading it


@pytest.mark.parametrize("where,secret", [
    ({"secret_key": "x" * 40}, "secret_key"),
    ({"access": {"idps": {"eid": {"issuer": "https://e", "client_id": "c", "client_secret": "s" * 20}}}},
     "client_secret"),
    ({"database_url": "postgresql://u:p@h/db"}, "database_url"),
    ({"sovereignty": {"master_key": "a" * 44}}, "master_key"),
])
def test_the_schema_refuses_a_secret_in_the_configuration(where, secret) -> None:
    values = {**VALUES["minimal"], "config": {"environment": "production", **where}}
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_the_schema_refuses_values_without_the_secret_references() -> None:
    with pytest.raises(helm.HelmValuesError, match="existingSecret"):
        render({})


def test_network_policy_allows_egress_only_to_the_named_peers() -> None:
    docs = render(VALUES["production"])
    policy = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "hub-sovhub")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    rules = policy["spec"]["egress"]
    net = VALUES["production"]["networkPolicy"]
    allowed = set()
    for rule in rules:
        assert rule.get("to"), f"an egress rule without `to` opens everything: {rule}"
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert "except" not in peer["ipBlock"]
                assert not peer["ipBlock"]["cidr"].endswith("/0"), "no rule may open the whole internet"
                allowed.add((peer["ipBlock"]["cidr"], tuple(p["port"] for p in rule["ports"])))
    expected = {(c, (5432,)) for c in net["database"]["cidrs"]}
    expected |= {(c, (8000,)) for c in VALUES["production"]["modelServers"][0]["egress"]["cidrs"]}
    expected |= {(c, (443,)) for idp in net["identityProviders"] for c in idp["cidrs"]}
    assert allowed == expected
    redis = [r for r in rules if any("podSelector" in p and p["podSelector"]["matchLabels"].get(
        "app.kubernetes.io/name") == "redis" for p in r["to"])]
    assert len(redis) == 1 and redis[0]["ports"] == [{"protocol": "TCP", "port": 6379}]
    dns = [r for r in rules if any(p.get("port") == 53 for p in r["ports"])]
    assert len(dns) == 1 and len(rules) == 1 + 1 + 1 + 1 + 1  # dns, database, redis, model server, eID


def test_minimal_values_deny_all_egress_but_dns() -> None:
    docs = render(VALUES["minimal"])
    policy = of_kind(docs, "NetworkPolicy")[0]
    assert "Egress" in policy["spec"]["policyTypes"]
    assert [sorted(p["port"] for p in r["ports"]) for r in policy["spec"]["egress"]] == [[53, 53]]


def test_gpu_resources_only_with_gpu_values() -> None:
    for name in ("minimal", "production"):
        assert "nvidia.com/gpu" not in json.dumps(render(VALUES[name])), name
    docs = render(VALUES["gpu"])
    vllm = [d for d in of_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "vllm"]
    assert {d["metadata"]["labels"]["sovhub.io/model"]: d["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["limits"]["nvidia.com/gpu"] for d in vllm} == {"qwen-7b": 1, "llama-guard": 2}
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub")
    assert "nvidia.com/gpu" not in json.dumps(gateway)
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    assert {"hub-sovhub-vllm-qwen-7b", "hub-sovhub-vllm-llama-guard"} <= services
    for d in vllm:
        env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HF_HUB_OFFLINE"] == "1"
    script = of_kind(docs, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--url 'http://hub-sovhub-vllm-qwen-7b:8000/v1' --model 'Qwen/Qwen2.5-7B-Instruct'" in script
    vllm_policy = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "hub-sovhub-vllm")
    assert vllm_policy["spec"]["egress"] == [] and "Egress" in vllm_policy["spec"]["policyTypes"]
    gateway_policy = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "hub-sovhub")
    assert any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "vllm"
               for r in gateway_policy["spec"]["egress"] for p in r["to"])
    workers = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub-worker"]
    assert workers and workers[0]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "batch-worker"


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_batch_workers_run_the_cli_command_with_probes_and_take_batches_from_the_gateways() -> None:
    from sovhub.cli import cli

    docs = render(VALUES["gpu"])
    worker = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub-worker")
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub")
    spec = worker["spec"]["template"]["spec"]
    container = spec["containers"][0]
    command = container["args"][0]
    assert command in cli.commands, f"the chart runs `sovhub {command}`, which the CLI does not have"
    assert container["args"] == ["batch-worker", "--no-migrate", "--host", "0.0.0.0", "--port", "8080"]
    assert worker["spec"]["replicas"] == 2
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "metrics": 9090}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    env = _env(worker)
    assert env["SOVHUB_BATCH__ENABLED"] == "true" and env["SOVHUB_SERVER__DRAIN_SECONDS"] == "60"
    assert spec["terminationGracePeriodSeconds"] > 60
    assert _env(gateway)["SOVHUB_BATCH__ENABLED"] == "false", "with workers the gateways leave batches to them"
    assert [e["name"] for e in container["env"]].count("SOVHUB_SERVER__DRAIN_SECONDS") == 1
    # The workers reach the database, Redis and model servers under the same egress policy as the gateways.
    policy = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "hub-sovhub")
    selected = policy["spec"]["podSelector"]["matchExpressions"][0]
    assert selected["key"] == "app.kubernetes.io/component" and "worker" in selected["values"]

    both = render({**VALUES["gpu"], "workers": {**VALUES["gpu"]["workers"], "gatewaysRunBatches": True}})
    gateway = next(d for d in of_kind(both, "Deployment") if d["metadata"]["name"] == "hub-sovhub")
    assert "SOVHUB_BATCH__ENABLED" not in _env(gateway)
    for name in ("minimal", "production"):  # no workers: the gateways run batches, as `sovhub serve` does alone
        docs = render(VALUES[name])
        assert not [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub-worker"]
        assert "SOVHUB_BATCH__ENABLED" not in _env(next(d for d in of_kind(docs, "Deployment")
                                                        if d["metadata"]["name"] == "hub-sovhub"))


def test_the_schema_refuses_unknown_worker_values() -> None:
    with pytest.raises(helm.HelmValuesError, match="args"):
        render({**VALUES["gpu"], "workers": {"enabled": True, "args": ["batches", "work"]}})


def test_autoscaling_on_cpu_and_in_flight_requests_with_a_disruption_budget() -> None:
    docs = render(VALUES["production"])
    hpa = of_kind(docs, "HorizontalPodAutoscaler")[0]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "sovhub_requests_in_flight"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hub-sovhub"}
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub")
    assert "replicas" not in gateway["spec"], "the HPA owns the replica count"
    pdb = of_kind(docs, "PodDisruptionBudget")[0]
    assert pdb["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]
    assert not of_kind(render(VALUES["minimal"]), "HorizontalPodAutoscaler")


def test_service_monitor_scrapes_metrics_with_the_token_by_reference() -> None:
    docs = render(VALUES["production"])
    monitor = of_kind(docs, "ServiceMonitor")[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "metrics"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "sovhub-secrets",
                                                                           "key": "metrics-token"}}
    service = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "hub-sovhub")
    assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]


def test_metrics_are_served_apart_and_only_prometheus_may_reach_them() -> None:
    docs = render(VALUES["production"])
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "hub-sovhub")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SOVHUB_METRICS_PORT"] == "9090" and env["SOVHUB_METRICS_HOST"] == "0.0.0.0"
    policy = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "hub-sovhub")
    by_port = {r["ports"][0]["port"]: r["from"] for r in policy["spec"]["ingress"]}
    assert by_port[8080] == VALUES["production"]["networkPolicy"]["ingressFrom"]
    assert by_port[9090] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_the_key_store_claim_outlives_the_release() -> None:
    docs = render(VALUES["minimal"])
    claim = of_kind(docs, "PersistentVolumeClaim")[0]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not of_kind(render(VALUES["production"]), "PersistentVolumeClaim")  # existingClaim given


def _setting_exists(path: list[str]) -> bool:
    """Whether SOVHUB_A__B__C names a real setting (pydantic-settings silently ignores one that does not)."""
    import typing

    from pydantic import BaseModel

    from sovhub.settings import Settings

    model: Any = Settings
    for i, part in enumerate(path):
        fields = model.model_fields
        if part not in fields:
            return False
        annotation = fields[part].annotation
        if i == len(path) - 1:
            return True
        origin = typing.get_origin(annotation)
        if origin is dict:
            value_type = typing.get_args(annotation)[1]
            return _model_has(value_type, path[i + 2:])
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return False
    return True


def _model_has(model: Any, rest: list[str]) -> bool:
    for part in rest:
        if part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


def test_every_environment_variable_the_chart_sets_is_a_real_setting(rendered) -> None:
    name, docs = rendered
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"].startswith("SOVHUB_") and "vllm" not in where:
                    path = env["name"].removeprefix("SOVHUB_").lower().split("__")
                    assert _setting_exists(path), f"{where}: {env['name']} is no sovhub setting"
