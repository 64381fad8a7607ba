"""python -m deployments.kubernetes worker | job IMAGE: the manifests as YAML."""

import sys

import yaml

from deployments.kubernetes import render_job, worker_manifests

what = sys.argv[1] if len(sys.argv) > 1 else ""
if what == "worker":
    sys.stdout.write(yaml.safe_dump_all(worker_manifests(), sort_keys=False))
elif what == "job" and len(sys.argv) > 2:
    sys.stdout.write(yaml.safe_dump(render_job({"image": sys.argv[2]}, "00000000-0000-0000-0000-000000000000",
                                               "example-run", {"PREFECT_API_URL": "http://prefect:4200/api"}),
                                    sort_keys=False))
else:
    sys.exit("usage: python -m deployments.kubernetes worker | job IMAGE")
