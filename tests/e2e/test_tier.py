"""The real-cluster tier as the normal suite sees it: without VTFLOW_E2E_KUBECONFIG it runs nothing
and says why in one line.

(Running the tier against the API double started as its own process passes but costs ~140 s on
this machine, over this suite's budget for one test; the README's Real-cluster tests section
gives the command.)
"""

import os
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).with_name("test_real_cluster.py")
REASON = ("VTFLOW_E2E_KUBECONFIG is not set: the real-cluster tier runs against a cluster you name "
          "(README: Real-cluster tests)")


def test_unset_kubeconfig_skips_every_step_with_one_reason():
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTFLOW_E2E_")}
    run = subprocess.run([sys.executable, "-m", "pytest", str(MODULE), "-m", "e2e", "-rs", "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=MODULE.parents[2], check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped == [f"SKIPPED [7] {MODULE.relative_to(MODULE.parents[2])}: {REASON}"], run.stdout[-3000:]
    assert run.stdout.splitlines()[-1].startswith("7 skipped in "), run.stdout[-3000:]
