"""The daily operations summary: facts from the rollups, wording from a template or an AI."""
