"""The names the app's messages and its interaction handler share: button action ids, the
status each asks for, and the message metadata that finds a post whose answer was lost."""

from __future__ import annotations

# action_id -> the status the button asks for; the button's value is the anomaly id.
ACTIONS = {
    "sentinelops_acknowledge": "acknowledged",
    "sentinelops_resolve": "resolved",
    "sentinelops_reopen": "open",
}
ACTIONS_BLOCK = "sentinelops_actions"
# Slack message metadata event_type on everything the app posts; its event_payload names the
# anomaly (or none) and the outbox row, so a post whose answer was lost is found, not repeated.
METADATA_EVENT = "sentinelops_anomaly"
