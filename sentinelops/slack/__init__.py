"""Slack: the messages, the notification outbox and its delivery, shared by the pipelines
(alerts after each run) and the HTTP service (a button press updates its message at once)."""
