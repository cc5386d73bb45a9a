#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests against the JSON schemas bundled with
kubernetes-validate, for several Kubernetes versions, strictly (unknown fields fail).

A resource whose apiVersion/kind has no schema for a version (e.g. an API version removed
in it) is an ERROR, not a warning, unless its API group is a known CRD group listed below.
Files after --expect-fail must each produce at least one error (a self-test that the
validator really catches what it should).
"""
import argparse
import sys

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

# Custom resources: no upstream schema; checked for basic shape only.
CRD_GROUPS = {"monitoring.coreos.com"}


def docs(path):
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d:
                yield d


def check(doc, version):
    api = doc.get("apiVersion", "")
    kind = doc.get("kind", "")
    name = (doc.get("metadata") or {}).get("name", "?")
    where = f"{kind}/{name} ({api}) on {version}"
    if not api or not kind or not (doc.get("metadata") or {}).get("name"):
        return [f"{where}: apiVersion, kind and metadata.name are required"]
    if api.split("/")[0] in CRD_GROUPS:
        return [] if isinstance(doc.get("spec"), dict) else [f"{where}: spec missing"]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except SchemaNotFoundError:
        return [f"{where}: no such API in this Kubernetes version (removed or unknown)"]
    except ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        return [f"{where}: {path}: {e.message}"]
    return []


def env_value(container, name):
    for e in container.get("env") or []:
        if e.get("name") == name:
            return e.get("value")
    return None


def policy(doc):
    """The hardening every workload must carry (issue: Kubernetes)."""
    if doc.get("kind") != "Deployment":
        return []
    name = doc["metadata"]["name"]
    pod = doc["spec"]["template"]["spec"]
    errs = []
    psc = pod.get("securityContext") or {}
    if not psc.get("runAsNonRoot"):
        errs.append("pod securityContext.runAsNonRoot is not true")
    for c in pod.get("containers", []):
        sc = c.get("securityContext") or {}
        where = f"container {c.get('name')}"
        if sc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            errs.append(f"{where}: readOnlyRootFilesystem is not true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errs.append(f"{where}: capabilities.drop lacks ALL")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            errs.append(f"{where}: may run as root")
        if "resources" not in c:
            errs.append(f"{where}: no resources")
        if c.get("name") == "gateway":
            if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/healthz":
                errs.append(f"{where}: liveness probe is not /healthz")
            if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/readyz":
                errs.append(f"{where}: readiness probe is not /readyz")
            if not (c.get("lifecycle") or {}).get("preStop"):
                errs.append(f"{where}: no preStop hook")
            drain = int(env_value(c, "PUSHFLEET_DRAIN_SECS") or 10)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= drain:
                errs.append(f"{where}: terminationGracePeriodSeconds {grace} <= drain {drain}")
    return [f"Deployment/{name}: {e}" for e in errs]


def errors_in(path, versions):
    errs = []
    n = 0
    for doc in docs(path):
        n += 1
        errs.extend(policy(doc))
        for v in versions:
            errs.extend(check(doc, v))
    if n == 0:
        errs.append(f"{path}: no resources")
    return errs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--versions", nargs="+", required=True)
    p.add_argument("--expect-fail", nargs="*", default=[])
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    failed = False
    for f in a.expect_fail:
        if not errors_in(f, a.versions):
            print(f"SELF-TEST FAILED: {f} should not validate", file=sys.stderr)
            failed = True
    total = 0
    for f in a.files:
        errs = errors_in(f, a.versions)
        total += sum(1 for _ in docs(f))
        for e in errs:
            print(f"{f}: {e}", file=sys.stderr)
        failed |= bool(errs)
    if failed:
        sys.exit(1)
    print(f"validated {total} resources in {len(a.files)} files on {', '.join(a.versions)}")


if __name__ == "__main__":
    main()
