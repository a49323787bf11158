"""Slack in the HTTP service: button presses (over HTTP or Socket Mode) applied as lifecycle
transitions, and the incident's message updated as soon as a transition commits."""
