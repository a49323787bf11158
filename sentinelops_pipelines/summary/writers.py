"""Who words the daily summary: one interface, a template writer and an OpenAI writer.

The AI gets the facts JSON and nothing else, once per day, with a timeout and at most two
retries on transient errors. It may word, order and soften; every number in its answer must be
a figure of the facts stated as what it is, with its direction (numbers.check), and the answer
must be plain text: a link, a mention or markup is refused. Otherwise the answer is discarded
and the deterministic wording ships instead.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from typing import Any

import dagster as dg
import openai
from pydantic import BaseModel, Field, ValidationError

from sentinelops.settings import Settings, get_settings
from sentinelops_pipelines.summary.numbers import check
from sentinelops_pipelines.summary.template import Wording

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 12_000  # the facts are bounded by construction; this guards the bill
MAX_BACKOFF = 30.0
INSTRUCTIONS = """You write the daily operations summary of a payments team from the JSON facts
in the user message. They are all you know.
Rules:
- Use only numbers that appear in the facts, written as they appear there (thousands
  separators are fine). Never compute, round, add up or estimate a number; no other dates.
- Name what each number is ("6 refunds", "failure rate 16.7%", "11,520.00 USD"). Give every
  change its sign or a direction word that matches it ("-20.0%", "down 20.0%"); failure-rate
  changes are in points.
- Plain text only: no links, no @-mentions, no Markdown, Slack or HTML formatting.
- Anomaly counts: "silenced" opened during a silence (nothing was posted for them while it
  lasted); "cleared" stopped breaching that day; "cleared_still_open" stopped breaching but
  nobody resolved them: worth a watch line.
- You may reword, reorder, merge and soften; stay calm and factual.
Answer with one JSON object: {"overall": "one or two sentences", "highlights": ["short
line", ...], "watch": ["what needs attention", ...]}. "watch" may be an empty list."""


# What an answer may never contain, checked in this order: it is posted to a channel, where a
# mention pages people, a link can phish and markup can disguise either.
REFUSED = (
    ("ai_refused_mention", re.compile(r"<[!@#]|(?<![\w.])@\w")),
    ("ai_refused_link", re.compile(
        r"\b[a-z][a-z0-9+.-]*://|\bwww\.|\bmailto:|<[^<>]*\|[^<>]*>"
        # Slack links bare domains too.
        r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|ai|app|dev|info|biz|me|us|uk|de"
        r"|ly|gg|xyz|link|site|online|ru|cn)\b", re.IGNORECASE)),
    ("ai_refused_markup", re.compile(
        r"<[^<>]*>|[*`]|(?<!\w)_[^_\n]+_(?!\w)|(?<!\w)~[^~\n]+~(?!\w)|\[[^\]]*\]\(|^\s*[#>]",
        re.MULTILINE)),
)  # fmt: skip


def refusal(text: str) -> str | None:
    """Why `text` may not be posted (a mention, a link, markup), or None."""
    return next((why for why, pattern in REFUSED if pattern.search(text)), None)


class SummaryWriter(dg.ConfigurableResource):
    """How a day's facts become words; `draft` is the deterministic wording."""

    def write(self, facts: dict[str, Any], draft: Wording) -> Wording:
        raise NotImplementedError


class TemplateSummary(SummaryWriter):
    """The deterministic wording only."""

    def write(self, facts: dict[str, Any], draft: Wording) -> Wording:
        return replace(draft, used_ai=False, ai_error="ai_not_configured", model=None)


class AIAnswer(BaseModel):
    overall: str = Field(min_length=1, max_length=800)
    highlights: list[str] = Field(min_length=1, max_length=15)
    watch: list[str] = Field(default_factory=list, max_length=15)


def classify(exc: Exception) -> str:
    """Our name for an OpenAI failure (messages are never stored: they may quote the key)."""
    if isinstance(exc, openai.RateLimitError):
        # A 429 is either "slow down" or "out of credit"; only the first is worth a retry.
        return "ai_quota" if _code(exc) == "insufficient_quota" else "ai_rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "ai_auth"
    if isinstance(exc, openai.APITimeoutError):
        return "ai_timeout"
    if isinstance(exc, openai.APIResponseValidationError):
        return "ai_bad_response"
    return "ai_failed"


def transient(exc: Exception) -> bool:
    """Worth one of the two retries: a rate limit (not an empty account), a timeout, a dropped
    connection or a server error; never a refusal of the request itself."""
    if isinstance(exc, openai.RateLimitError):
        return classify(exc) == "ai_rate_limited"
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body)
    codes = {
        exc.code,
        exc.type,
        *(inner.get(k) for k in ("code", "type") if isinstance(inner, dict)),
    }
    return "insufficient_quota" if "insufficient_quota" in codes else exc.code


class OpenAISummary(SummaryWriter):
    """Wording by an OpenAI chat model, fact-checked against the facts."""

    api_key: str
    model: str
    base_url: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = Field(default=2, ge=0, le=2)
    retry_backoff_seconds: float = 2.0

    def write(self, facts: dict[str, Any], draft: Wording) -> Wording:
        model = self.model
        facts_json = json.dumps(facts, sort_keys=True)
        if len(facts_json) > MAX_INPUT_CHARS:
            return replace(draft, used_ai=False, ai_error="ai_failed", model=model)
        client = openai.OpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout_seconds,
            max_retries=0,  # retries are counted here, so "at most two" holds
        )
        outcome: Wording | str = "ai_failed"
        for attempt in range(self.max_retries + 1):
            try:
                outcome = self._ask(client, model, facts_json, facts)
                break
            except openai.OpenAIError as exc:
                outcome = classify(exc)
                if not transient(exc):
                    break
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt))
        if isinstance(outcome, str):
            log.warning("AI wording not used: %s", outcome)
            return replace(draft, used_ai=False, ai_error=outcome, model=model)
        return outcome

    def _delay(self, attempt: int) -> float:
        return float(min(self.retry_backoff_seconds * 2**attempt, MAX_BACKOFF))

    def _ask(
        self, client: openai.OpenAI, model: str, facts_json: str, facts: dict[str, Any]
    ) -> Wording | str:
        """The checked wording, or why there is none; an OpenAIError propagates to write(),
        which classifies it and decides on a retry."""
        response = client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": facts_json},
            ],
            response_format={"type": "json_object"},
            temperature=0.2,
            max_tokens=700,
        )
        try:
            choice = response.choices[0]
            if choice.finish_reason not in (None, "stop"):
                return "ai_bad_response"
            answer = AIAnswer.model_validate_json(choice.message.content or "")
        except (IndexError, AttributeError, ValidationError):
            return "ai_bad_response"
        pieces = [answer.overall, *answer.highlights, *answer.watch]
        refused = next((why for piece in pieces if (why := refusal(piece))), None)
        if refused:
            log.warning("AI wording refused: %s", refused)
            return refused
        # Each piece on its own: a subject named in one line says nothing of the next.
        wrong = [m for piece in pieces for m in check(piece, facts)]
        if wrong:
            shown = [f"{m.written} ({m.reason})" for m in wrong[:10]]
            log.warning("AI wording discarded: figures the facts do not state: %s", shown)
            # An invented figure outranks a right figure worded against its sign.
            if all(m.reason == "wrong_direction" for m in wrong):
                return "ai_wrong_direction"
            return "ai_numeric_mismatch"
        return Wording(
            overall=answer.overall.strip(),
            highlights=[h.strip() for h in answer.highlights if h.strip()],
            watch=[w.strip() for w in answer.watch if w.strip()],
            used_ai=True,
            ai_error=None,
            model=response.model or model,
        )


def writer_for(settings: Settings) -> SummaryWriter:
    """The writer the settings ask for: OpenAI's with OPENAI_API_KEY, else the template's."""
    if settings.openai_api_key is None:
        return TemplateSummary()
    return OpenAISummary(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        model=settings.openai_model,
    )


@dg.resource(description="Words the daily summary: OpenAI's model when OPENAI_API_KEY is set.")
def summary_writer(_: dg.InitResourceContext) -> SummaryWriter:
    # Chosen when each run starts, from the environment it runs in; the key never enters the
    # run's stored configuration (a function resource's value is not configuration).
    return writer_for(get_settings())
