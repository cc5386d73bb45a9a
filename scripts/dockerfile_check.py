#!/usr/bin/env python3
"""Offline checks of the Dockerfile (there is no Docker engine here): every COPY source
from the build context exists and is not excluded by .dockerignore, the runtime stage runs
as a non-root user, both binaries are copied, and the ports are exposed."""
import fnmatch
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
df = open(os.path.join(root, "Dockerfile")).read()
ignore = [l.strip() for l in open(os.path.join(root, ".dockerignore")) if l.strip() and not l.startswith("#")]


def ignored(path):
    verdict = False
    for pat in ignore:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p + "/*") or path.startswith(p + "/"):
            verdict = not neg
    return verdict


errors = []
stages = re.split(r"(?m)^FROM ", df)[1:]
for line in df.splitlines():
    m = re.match(r"^COPY\s+(?!--from)(.+)$", line.strip())
    if not m:
        continue
    *srcs, _dst = m.group(1).split()
    for s in srcs:
        if not os.path.exists(os.path.join(root, s)):
            errors.append(f"COPY source missing: {s}")
        elif ignored(s):
            errors.append(f"COPY source excluded by .dockerignore: {s}")
runtime = stages[-1]
if not re.search(r"(?m)^USER\s+(?!0\b|root\b)\S+", runtime):
    errors.append("runtime stage does not switch to a non-root USER")
for b in ("gateway", "pushctl"):
    if f"/usr/local/bin/{b}" not in runtime:
        errors.append(f"runtime stage does not install {b}")
if not re.search(r"(?m)^EXPOSE\s+8080\s+9090", runtime):
    errors.append("EXPOSE 8080 9090 missing")
if "HEALTHCHECK" in re.sub(r"#.*", "", runtime):
    errors.append("the image should not define a HEALTHCHECK (Kubernetes probes)")
# include_str! paths the build needs must be in the context too.
for src in ("clients/js/pushfleet.js", "clients/js/pushfleet.d.ts", "gateway/assets/index.html"):
    if ignored(src):
        errors.append(f"{src} is needed by the build but excluded by .dockerignore")
for e in errors:
    print("Dockerfile:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
