#!/usr/bin/env python3
"""The deployment files parse, and say what sluiced needs (deploy/).

Kubernetes (deploy/kubernetes/sluice.yaml, parsed with PyYAML): the
StatefulSet runs 3 pods at once (Parallel), each with a volume mounted at
the data directory it gives sluiced; node_id is the pod ordinal + 1; the
seeds name the three pods through the headless Service on the peer port;
the ports are the ones sluiced listens on (broker/config.def defaults,
also set through SLUICED_*); probes point at the http port (/readyz,
/healthz); pods spread across hosts; the headless Service publishes
not-ready addresses; a client Service; a PodDisruptionBudget of one.
systemd (deploy/systemd/sluiced.service): restarts on failure, a raised
descriptor limit, a dedicated user, data under /var/lib/sluice.
Containerfile: built with deploy/install-deps.sh and meson install.

Usage: test_manifests.py SOURCE_ROOT. Prints one line per check; exit 1
if any failed."""
import configparser
import re
import sys

import yaml

root = sys.argv[1]
fails = 0


def check(what, cond):
    global fails
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        fails += 1


def config_default(key):
    text = open(f"{root}/broker/config.def").read()
    m = re.search(r"SL_CONF\(" + key + r',\s*\w+,\s*"([^"]*)"', text)
    return m.group(1) if m else None


ports = {name: int(config_default(name + "_port")) for name in ("client", "peer", "http")}
check("config.def has the three ports", all(ports.values()))

docs = [d for d in yaml.safe_load_all(open(f"{root}/deploy/kubernetes/sluice.yaml")) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
check("every manifest has a kind and a name", all("kind" in d and d["metadata"]["name"] for d in docs))

sts = kinds["StatefulSet"][0]
spec = sts["spec"]
pod = spec["template"]["spec"]
ctr = pod["containers"][0]
env = {e["name"]: e.get("value") for e in ctr.get("env", [])}
check("3 replicas", spec["replicas"] == 3)
check("podManagementPolicy Parallel", spec["podManagementPolicy"] == "Parallel")

services = {s["metadata"]["name"]: s for s in kinds["Service"]}
headless = services.get(spec["serviceName"])
check("serviceName is a Service of the file", headless is not None)
check("the headless Service has no cluster IP", headless["spec"].get("clusterIP") == "None")
check("the headless Service publishes not-ready addresses",
      headless["spec"].get("publishNotReadyAddresses") is True)
check("the headless Service carries the peer port",
      any(p["port"] == ports["peer"] for p in headless["spec"]["ports"]))
clients = [s for n, s in services.items() if n != spec["serviceName"]]
check("a client Service on the client port",
      any(p["port"] == ports["client"] for s in clients for p in s["spec"]["ports"]))

container_ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
check("container ports are sluiced's", container_ports == ports)
check("SLUICED_*_PORT match", all(int(env[f"SLUICED_{n.upper()}_PORT"]) == ports[n] for n in ports))
check("it listens on every interface", env.get("SLUICED_LISTEN_HOST") == "0.0.0.0")


def probe_port(p):
    port = p["httpGet"]["port"]
    return container_ports.get(port, port)


check("readiness: /readyz on the http port",
      ctr["readinessProbe"]["httpGet"]["path"] == "/readyz" and probe_port(ctr["readinessProbe"]) == ports["http"])
check("liveness: /healthz on the http port",
      ctr["livenessProbe"]["httpGet"]["path"] == "/healthz" and probe_port(ctr["livenessProbe"]) == ports["http"])

data_dir = env.get("SLUICED_DATA_DIR")
claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
check("a volume claim per pod, mounted at the data dir",
      any(mounts.get(c) == data_dir for c in claims) and data_dir is not None)

args = " ".join(ctr.get("command", []) + ctr.get("args", []))
check("node_id = pod ordinal + 1", re.search(r"--node-id \$\$\(\( \$\{HOSTNAME##\*-\} \+ 1 \)\)", args) is not None)
seeds = re.search(r"--seeds (\S+)", args)
want = ",".join(
    f"{i + 1}@{sts['metadata']['name']}-{i}.{spec['serviceName']}.${{POD_NAMESPACE}}.svc.cluster.local:{ports['peer']}"
    for i in range(3))
check("seeds: the three pods by stable name on the peer port", seeds is not None and seeds.group(1) == want)
check("each pod advertises its stable name",
      f"--advertised-host ${{HOSTNAME}}.{spec['serviceName']}.${{POD_NAMESPACE}}.svc.cluster.local" in args)

anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
check("pods spread across hosts", any(t["topologyKey"] == "kubernetes.io/hostname" for t in anti))
check("resource requests", "cpu" in ctr["resources"]["requests"] and "memory" in ctr["resources"]["requests"])
check("a grace period for the handoff", pod.get("terminationGracePeriodSeconds", 30) >= 30)

pdb = kinds["PodDisruptionBudget"][0]
check("a PodDisruptionBudget allowing one pod down", pdb["spec"].get("maxUnavailable") == 1)
check("the budget selects the pods",
      pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"])

unit = configparser.ConfigParser(strict=False, interpolation=None)
unit.optionxform = str
unit.read(f"{root}/deploy/systemd/sluiced.service")
svc = unit["Service"]
check("systemd: restart on failure", svc.get("Restart") == "on-failure")
check("systemd: a raised descriptor limit", int(svc.get("LimitNOFILE", "0")) >= 65536)
check("systemd: a dedicated user", svc.get("User") == "sluice")
check("systemd: data under /var/lib/sluice", "--data-dir /var/lib/sluice" in svc.get("ExecStart", ""))
check("systemd: the config file from deploy/sluiced.conf", "--config /etc/sluice/sluiced.conf" in svc.get("ExecStart", ""))

cf = open(f"{root}/deploy/Containerfile").read()
check("Containerfile: deploy/install-deps.sh, then meson install",
      "bash deploy/install-deps.sh" in cf and "meson install" in cf)
check("Containerfile: the ports", all(str(p) in cf for p in ports.values()))

sys.exit(1 if fails else 0)
