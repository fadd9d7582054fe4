"""Chart-specific checks on manifests rendered by `helm template` (scripts/helm-check.sh).

The Kubernetes schemas say a manifest is well formed; these say it is the deployment
docs/deployment.md describes: roles, probes, the migration hook, the non-root read-only
pods, secrets by reference, and what each values file switches on.

Usage: check_manifests.py minimal|full RENDERED.yaml
"""

import sys

import yaml


def fail(message):
    print(f"helm-check: {message}", file=sys.stderr)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def main():
    case, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    deployments = {d["metadata"]["name"].rsplit("-", 1)[1]: d for d in by_kind["Deployment"]}
    expect(set(deployments) == {"api", "worker"}, f"deployments {sorted(deployments)}")
    jobs = by_kind.get("Job", [])
    expect(len(jobs) == 1, "one migration Job")
    job = jobs[0]
    hooks = job["metadata"]["annotations"]
    expect(hooks["helm.sh/hook"] == "pre-install,pre-upgrade", "the Job is a pre-install/pre-upgrade hook")
    expect(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"], "the Job runs `conclave migrate`")

    pods = [(role, d["spec"]["template"]["spec"]) for role, d in deployments.items()]
    pods.append(("migrate", job["spec"]["template"]["spec"]))
    for role, pod in pods:
        expect(pod["securityContext"]["runAsNonRoot"] is True, f"{role}: runAsNonRoot")
        expect(pod["automountServiceAccountToken"] is False, f"{role}: no service account token")
        for container in pod["containers"]:
            ctx = container["securityContext"]
            expect(ctx["readOnlyRootFilesystem"] is True, f"{role}: read-only root filesystem")
            expect(ctx["allowPrivilegeEscalation"] is False, f"{role}: no privilege escalation")
            expect(ctx["capabilities"]["drop"] == ["ALL"], f"{role}: capabilities dropped")
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            expect("/tmp" in mounts, f"{role}: /tmp is a writable emptyDir")
            env = {e["name"]: e for e in container["env"]}
            url = env.get("CONCLAVE_DATABASE__URL", {})
            expect("secretKeyRef" in url.get("valueFrom", {}), f"{role}: database URL from a Secret")

    for role, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        expect(container["args"] == ["serve", "--role", role], f"{role}: args {container['args']}")
        expect(container["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{role}: liveness /healthz")
        expect(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{role}: readiness /readyz")
        expect(container["startupProbe"]["httpGet"]["path"] == "/healthz", f"{role}: startup /healthz")
        expect("limits" in container["resources"], f"{role}: resource limits")
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in ("/etc/conclave/config", "/etc/conclave/keys", "/var/lib/conclave"):
            expect(path in mounts, f"{role}: {path} mounted")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        expect(labels["app.kubernetes.io/component"] == role, f"{role}: component label")
        expect(deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{role}: selector matches")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        expect("checksum/config" in annotations, f"{role}: pods roll when the config changes")

    service = by_kind["Service"][0]
    expect(service["spec"]["selector"]["app.kubernetes.io/component"] == "api", "the Service selects api pods only")
    expect({d["metadata"]["name"].rsplit("-", 1)[1] for d in by_kind["PodDisruptionBudget"]} == {"api", "worker"}, "a PDB per role")
    expect(len(by_kind["NetworkPolicy"]) == 2, "a NetworkPolicy per role")
    config = by_kind["ConfigMap"][0]["data"]["conclave.toml"]
    expect('bind = "0.0.0.0:8080"' in config, "the config binds every interface")
    expect("migrate_on_start = false" in config, "pods leave migrations to the hook")

    api_pod = deployments["api"]["spec"]["template"]["spec"]
    api_env = {e["name"]: e for e in api_pod["containers"][0]["env"]}
    keys_volume = next(v for v in api_pod["volumes"] if v["name"] == "master-keys")
    data_volume = next(v for v in api_pod["volumes"] if v["name"] == "data")

    if case == "minimal":
        expect(deployments["api"]["spec"]["replicas"] == 2, "api replicas 2")
        expect(deployments["worker"]["spec"]["replicas"] == 2, "worker replicas 2")
        expect("HorizontalPodAutoscaler" not in by_kind, "no HPA by default")
        expect("Ingress" not in by_kind, "no Ingress by default")
        expect(("PersistentVolumeClaim", "t-conclave-data") in names, "a PVC by default")
        expect(data_volume["persistentVolumeClaim"]["claimName"] == "t-conclave-data", "pods mount the PVC")
        secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
        expect(set(secrets["t-conclave"]["data"]) == {"database-url", "master-keys.toml"}, "the chart's Secret")
        expect(keys_volume["secret"]["secretName"] == "t-conclave", "master keys from the chart's Secret")
        migrate_secret = secrets["t-conclave-migrate"]["metadata"]["annotations"]
        expect(int(migrate_secret["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"]), "the Job's Secret exists before the Job")
        expect("CONCLAVE_AUDIT__SIGNING_KEY" not in api_env, "no audit key unless given")
        expect(all("egress" not in p["spec"] for p in by_kind["NetworkPolicy"]), "egress open by default")
    elif case == "full":
        expect("replicas" not in deployments["api"]["spec"], "the HPA owns api replicas")
        expect(deployments["worker"]["spec"]["replicas"] == 3, "worker replicas from values")
        hpa = by_kind["HorizontalPodAutoscaler"][0]
        expect(hpa["spec"]["scaleTargetRef"]["name"] == deployments["api"]["metadata"]["name"], "the HPA scales the api")
        expect((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12), "HPA bounds")
        expect({m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}, "HPA on CPU and memory")
        ingress = by_kind["Ingress"][0]
        expect(ingress["spec"]["tls"][0]["secretName"] == "conclave-tls", "ingress TLS")
        expect("Secret" not in by_kind, "existing secrets only: the chart creates none")
        expect("PersistentVolumeClaim" not in by_kind, "existing claim: no PVC created")
        expect(data_volume["persistentVolumeClaim"]["claimName"] == "conclave-files", "pods mount the existing claim")
        ref = api_env["CONCLAVE_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
        expect(ref == {"name": "conclave-db-app", "key": "uri"}, f"database URL from the existing secret: {ref}")
        job_env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        expect(job_env["CONCLAVE_DATABASE__URL"]["valueFrom"]["secretKeyRef"] == ref, "the Job reads the existing secret")
        expect(keys_volume["secret"]["secretName"] == "conclave-master-keys", "master keys from the existing secret")
        audit = api_env["CONCLAVE_AUDIT__SIGNING_KEY"]["valueFrom"]["secretKeyRef"]
        expect(audit["name"] == "conclave-audit-key", "audit key from the existing secret")
        expect(all("egress" in p["spec"] for p in by_kind["NetworkPolicy"]), "egress rules when enabled")
        expect("[[identity.oidc]]" in config and "[[export.schedules]]" in config, "arrays of tables rendered")
        expect("pool_size = 24\n" in config, "integers stay integers")
    else:
        fail(f"unknown case {case}")
    print(f"helm-check: {case}: {len(docs)} manifests pass the chart checks")


if __name__ == "__main__":
    main()
