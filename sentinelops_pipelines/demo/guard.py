"""Where `sentinelops demo` may send traffic without being told twice: this machine's own stack.

The demo stores events, opens anomalies and, through the running stack, posts alerts. On a
laptop that is the point; on a shared or production stack it would page people about payments
that never happened. So it goes ahead on its own only when the API and the database are on
this machine, the database holds no live-mode events, and it signs with the webhook secret
`sentinelops up` generated; `--allow-non-local` is the user saying they mean it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from sentinelops import local_secrets
from sentinelops.settings import Settings
from sentinelops_pipelines.storage import events as events_sql

OVERRIDE_FLAG = "--allow-non-local"


@dataclass(frozen=True)
class SigningSecret:
    value: str
    generated: bool  # the one `sentinelops up` generated under SENTINELOPS_HOME
    path: Path  # where `up` keeps its generated secret


def signing_secret(settings: Settings) -> SigningSecret | None:
    """The secret the demo signs with: `up`'s generated one when STRIPE_WEBHOOK_SECRET is unset
    or includes it, else the first configured one; None when there is neither."""
    path = settings.sentinelops_home / "webhook-secret"
    generated = local_secrets.read(path)
    configured = settings.webhook_secret_values
    if generated is not None and (not configured or generated in configured):
        return SigningSecret(generated, True, path)
    if configured:
        return SigningSecret(configured[0], False, path)
    return None


def is_local_host(host: str) -> bool:
    """True for a loopback name or address, or a Unix socket (an empty host is libpq's socket)."""
    host = host.strip().strip("[]").lower()
    if not host or host.startswith(("/", "@")):
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def database_hosts(url: str) -> list[str]:
    """The hosts libpq connects to for `url`, as libpq picks them: hostaddr over host, each
    from the URL or else the environment (PGHOSTADDR, PGHOST); '' is the default Unix socket."""
    params = conninfo_to_dict(url)
    defaults = {
        option.keyword.decode(): option.val.decode()
        for option in pq.Conninfo.get_defaults()
        if option.val is not None
    }
    for key in ("hostaddr", "host"):
        value = params.get(key) or defaults.get(key)
        if value:
            return [part.strip() for part in str(value).split(",")]
    return [""]


def refusals(api: str, database_url: str, secret: SigningSecret) -> list[str]:
    """Why the demo must not run against these targets unless told to; empty when it may."""
    reasons = []
    api_host = httpx.URL(api).host
    if not is_local_host(api_host):
        reasons.append(f"the API ({api_host}) is not on this machine")
    try:
        remote = [host for host in database_hosts(database_url) if not is_local_host(host)]
    except psycopg.ProgrammingError:
        remote = ["an address DATABASE_URL does not make clear"]
    if remote:
        reasons.append(f"the database ({', '.join(remote)}) is not on this machine")
    if not secret.generated:
        reasons.append(
            "it would sign with STRIPE_WEBHOOK_SECRET, not the secret `sentinelops up` generated"
            f" in {secret.path}, so the API may be a real endpoint"
        )
    return reasons


def holds_live_events(database_url: str) -> bool:
    """True when the database's recent events include live-mode ones: a copy of production,
    whose Slack channel would get the demo's alerts. Raises psycopg.Error if unreachable."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return events_sql.recent_live_events(conn)
