"""`sentinelops seed-demo` and `sentinelops demo`: see the whole loop without real traffic.

Here, not in the core, because both drive the pipelines: the seed records anomalies through
their storage, the demo has the rules assets evaluate what it sent. The CLI imports this lazily.
The demo's output is one progress line and the result (output.py); it refuses to run against
anything but this machine's own stack unless told (guard.py); it talks to the API in send.py.
"""

from sentinelops_pipelines.demo.run import run_demo
from sentinelops_pipelines.demo.seed import seed_demo

__all__ = ["run_demo", "seed_demo"]
