"""The AI's wording is checked for meaning, not digits: each number against the figure it
claims, with its direction, and nothing that Slack would turn into a link, a ping or markup.

The facts are built by `facts.build` from a week of rollups, as the asset builds them: seven
ordinary days, then a day when revenue fell 20%, refunds rose 500% and the failure rate rose
from 2.8% to 12.5%.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from sentinelops_pipelines.summary import facts, template
from sentinelops_pipelines.summary.numbers import check
from sentinelops_pipelines.summary.writers import refusal

DAY = date(2026, 3, 9)
ORDINARY = {"payments": 1728, "payments_failed": 48, "refunds": 1, "disputes": 0,
            "subscriptions_started": 6, "subscriptions_cancelled": 3, "windows": 288}  # fmt: skip
BAD = ORDINARY | {"payments_failed": 216, "refunds": 6, "disputes": 3}
ANOMALIES = {"high": {"opened": 1, "still_open": 1}, "medium": {"opened": 1, "resolved": 1},
             "low": {"still_open": 1}}  # fmt: skip
RULES = {"dispute_spike": 1, "payment_failure_spike": 1}
# A busy day: 5 incidents found during a silence, 6 cleared, 4 of them still open; no other
# anomaly count is 4, 5 or 6, so only the new counts can vouch for those numbers.
HELD = {"high": {"opened": 7, "still_open": 7, "silenced": 5, "cleared": 6,
                 "cleared_still_open": 4},
        "medium": {"opened": 1, "resolved": 2}}  # fmt: skip


def day_facts(
    today: dict | None = BAD,
    history: int = 7,
    revenue: dict | None = None,
    revenue_before: dict | None = None,
    open_by_rule: dict = RULES,
    anomalies: dict = ANOMALIES,
) -> dict:
    before = [DAY - timedelta(days=k) for k in range(1, history + 1)]
    daily = {d: ORDINARY for d in before} | ({DAY: today} if today else {})
    amounts = {d: revenue_before or {"usd": 1_440_000} for d in before}
    amounts[DAY] = {"usd": 1_152_000, "eur": 2500} if revenue is None else revenue
    return facts.build(DAY, daily, amounts, anomalies, open_by_rule)


FACTS = day_facts()
HELD_FACTS = day_facts(anomalies=HELD, open_by_rule={"payment_failure_spike": 7})


def test_the_facts_are_the_day_described():
    m, usd = FACTS["metrics"], FACTS["revenue"][0]
    assert (m["failure_rate_pct"]["day"], m["failure_rate_pct"]["average_7d"]) == (12.5, 2.8)
    assert m["failure_rate_pct"]["vs_average_7d_points"] == 9.7
    assert (usd["currency"], usd["day"], usd["vs_previous_day_pct"]) == ("USD", 11520.0, -20.0)
    assert (m["refunds"]["day"], m["refunds"]["vs_previous_day_pct"]) == (6, 500.0)
    assert (FACTS["windows_per_day"], m["payments_failed"]["day"]) == (288, 216)


class TestTheTemplatePasses:
    """The deterministic wording states every figure as what it is; if it did not pass, every
    AI answer that copies the draft would be discarded."""

    @pytest.mark.parametrize(
        "day",
        [
            pytest.param(FACTS, id="a_bad_day_after_an_ordinary_week"),
            pytest.param(day_facts(BAD | {"windows": 200}), id="a_partial_day_names_its_windows"),
            pytest.param(day_facts(history=0), id="the_first_day_has_no_comparison"),
            pytest.param(day_facts(today=None, revenue={}), id="a_day_without_traffic"),
            pytest.param(
                day_facts(
                    ORDINARY | {"payments": 864, "payments_failed": 24}, revenue={"usd": 720_000}
                ),
                id="payments_and_revenue_fell_by_half",
            ),  # fmt: skip
            pytest.param(
                day_facts(revenue={"jpy": 150_000}, revenue_before={"jpy": 100_000}),
                id="a_zero_decimal_currency",
            ),  # fmt: skip
            pytest.param(
                day_facts(open_by_rule={"spike_5m": 2, "refund_spike_v2": 1}),
                id="digits_in_rule_names_are_names",
            ),  # fmt: skip
            pytest.param(HELD_FACTS, id="silenced_and_cleared_incidents"),
        ],
    )
    def test_every_line_checks_out(self, day):
        wording = template.compose(day)
        for line in [wording.overall, *wording.highlights, *wording.watch]:
            assert check(line, day) == [], line
        assert check(template.render_text(day["date"], wording), day) == []


NOT_A_FACT, WRONG_DIRECTION = "not_a_fact", "wrong_direction"
LINK, MENTION, MARKUP = "ai_refused_link", "ai_refused_mention", "ai_refused_markup"


class TestSilencedAndCleared:
    """Incidents found during a silence and incidents that cleared on their own are counted
    apart; the wording names them and the check vouches for those counts only."""

    def test_counted_apart_from_opened_and_still_open(self):
        a = HELD_FACTS["anomalies"]
        assert (a["opened"]["total"], a["still_open"]["total"], a["resolved"]["total"]) == (8, 7, 2)
        assert (a["silenced"], a["cleared"]["total"], a["cleared_still_open"]["total"]) == (
            {"high": 5, "medium": 0, "low": 0, "total": 5}, 6, 4)  # fmt: skip

    def test_the_template_says_them(self):
        wording = template.compose(HELD_FACTS)
        assert "8 anomalies opened (5 during a silence), 7 still open" in wording.overall
        assert wording.highlights[-1].endswith(", 5 found during a silence, 6 cleared")
        assert ("4 anomalies cleared on their own but are still open: resolve them or look why"
                in wording.watch)  # fmt: skip

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("5 incidents were found during a silence.", id="silenced"),
            pytest.param("Six incidents cleared on their own.", id="cleared"),
            pytest.param("4 cleared incidents are still open.", id="cleared_still_open"),
        ],
    )
    def test_only_the_new_counts_vouch_for_them(self, text):
        assert check(text, HELD_FACTS) == []
        without = {k: v for k, v in HELD_FACTS["anomalies"].items()
                   if k not in ("silenced", "cleared", "cleared_still_open")}  # fmt: skip
        assert [m.reason for m in check(text, HELD_FACTS | {"anomalies": without})] == [NOT_A_FACT]

    def test_a_miscounted_silence_is_found(self):
        found = check("3 incidents were silenced.", HELD_FACTS)
        assert [(m.written, m.reason) for m in found] == [("3", NOT_A_FACT)]


class TestEachFigureAgainstTheFactItClaims:
    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("Revenue: 11,520.00 USD (previous day 14,400.00 USD, -20.0%)",
                         id="a_signed_change_as_the_template_writes_it"),
            pytest.param("Revenue fell 20.0% against the 7-day average.",
                         id="correct_direction_passes"),
            pytest.param("USD revenue was 20.0% lower than the previous day.",
                         id="a_direction_word_after_the_number"),
            pytest.param("A drop of 20.0% in revenue.", id="a_drop_of"),
            pytest.param("Refunds rose 500.0% to 6.", id="a_rise_and_the_level_it_rose_to"),
            pytest.param("The failure rate rose to 12.5% from 2.8%.",
                         id="rose_to_the_days_value"),
            pytest.param("Failure rate up from a 7-day average of 2.8%.", id="up_from_the_base"),
            pytest.param("12.5% of payments failed, well above the 7-day average of 2.8%.",
                         id="above_the_base"),
            pytest.param("The failure rate is up 9.7 percentage points.",
                         id="the_failure_rate_moves_in_points"),
            pytest.param("Payments: 1,728, +0.0% on the previous day.",
                         id="no_change_has_no_direction_to_contradict"),
            pytest.param("216 payments failed.", id="failed_payments_are_the_failures"),
            pytest.param("Three disputes and six refunds came in.", id="number_words"),
            pytest.param("On March 9, 2026, 1,728 payments came in.", id="the_date_in_words"),
            pytest.param("Revenue was $11,520.00 and €25.00.", id="currency_symbols"),
            pytest.param("Revenue USD11,520.00.", id="a_currency_glued_to_its_amount"),
            pytest.param("All 288 5-minute windows were rolled up.",
                         id="window_counts_next_to_windows"),
            pytest.param("2 anomalies opened, 1 resolved, 2 still open.", id="anomaly_counts"),
        ],
    )  # fmt: skip
    def test_a_faithful_wording_passes(self, text):
        assert check(text, FACTS) == []

    @pytest.mark.parametrize(
        ("text", "written", "reason"),
        [
            pytest.param("Revenue up 20.0% against the 7-day average.", "20.0%",
                         WRONG_DIRECTION, id="revenue_fell_but_the_answer_says_up"),
            pytest.param("Revenue rose to 11,520.00 USD.", "11,520.00 USD", WRONG_DIRECTION,
                         id="revenue_fell_but_the_answer_says_it_rose_to_its_value"),
            pytest.param("Refunds -500.0% on the previous day.", "-500.0%", WRONG_DIRECTION,
                         id="minus_500_is_not_plus_500"),
            pytest.param("Revenue 20.0% against the 7-day average.", "20.0%", WRONG_DIRECTION,
                         id="a_change_without_its_sign_hides_the_direction"),
            pytest.param("The failure rate is below its 7-day average of 2.8%.", "2.8%",
                         WRONG_DIRECTION, id="a_comparison_the_wrong_way_round"),
            pytest.param("Payments fell 20.0%.", "20.0%", NOT_A_FACT,
                         id="the_change_of_another_metric"),
            pytest.param("The failure rate rose 9.7%.", "9.7%", NOT_A_FACT,
                         id="points_are_not_percent"),
            pytest.param("Refunds rose 12.5%.", "12.5%", NOT_A_FACT,
                         id="a_rate_is_not_a_change"),
            pytest.param("Revenue reached 2,026.00 USD.", "2,026.00 USD", NOT_A_FACT,
                         id="date_part_2026_does_not_vouch_for_2026_dollars"),
            pytest.param("2026 payments came in.", "2026", NOT_A_FACT,
                         id="the_year_is_not_a_count"),
            pytest.param("9 disputes were opened.", "9", NOT_A_FACT,
                         id="the_day_of_the_month_is_not_a_count"),
            pytest.param("Revenue 288.00 USD.", "288.00 USD", NOT_A_FACT,
                         id="288_windows_is_not_a_revenue_figure"),
            pytest.param("288 refunds came in.", "288", NOT_A_FACT,
                         id="288_windows_is_not_a_refund_count"),
            pytest.param("The day had 288.", "288", NOT_A_FACT,
                         id="288_windows_is_no_figure_on_its_own"),
            pytest.param("5% of payments failed.", "5%", NOT_A_FACT,
                         id="5_minute_windows_are_not_a_rate"),
            pytest.param("Quieter than 2026-03-08.", "2026-03-08", NOT_A_FACT,
                         id="another_date"),
            pytest.param("Quieter than on March 8.", "March 8", NOT_A_FACT,
                         id="another_date_in_words"),
            pytest.param("5 more refunds than the previous day.", "5", NOT_A_FACT,
                         id="a_computed_difference"),
            pytest.param("About 1,700 payments.", "1,700", NOT_A_FACT, id="a_rounded_number"),
            pytest.param("Four disputes came in.", "Four", NOT_A_FACT,
                         id="a_number_word_that_is_no_fact"),
            pytest.param("Revenue USD12.6 today.", "12.6", NOT_A_FACT,
                         id="digits_glued_to_letters_are_still_a_number"),
            pytest.param("Revenue 25.00 USD.", "25.00 USD", NOT_A_FACT,
                         id="an_amount_in_the_wrong_currency"),
        ],
    )  # fmt: skip
    def test_a_wrong_figure_is_found(self, text, written, reason):
        assert [(m.written, m.reason) for m in check(text, FACTS)] == [(written, reason)]


class TestRefusal:
    """What Slack would turn into a link, a ping or formatting is refused outright."""

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            pytest.param("Revenue fell 20.0% & refunds rose 500.0%.", None,
                         id="an_ampersand_is_escaped_when_posted_not_refused"),
            pytest.param("Open anomalies by rule: payment_failure_spike (1).", None,
                         id="underscores_inside_a_rule_name_are_not_italics"),
            pytest.param("Refunds rose, e.g. on card payments.", None,
                         id="abbreviations_are_not_domains"),
            pytest.param("Details: https://example.com/summary", LINK,
                         id="a_web_link"),
            pytest.param("See www.example.com for more.", LINK, id="www"),
            pytest.param("Check status.stripe.com first.", LINK,
                         id="a_bare_domain_slack_would_link"),
            pytest.param("Open <https://evil.example|the dashboard>.", LINK,
                         id="a_slack_link"),
            pytest.param("Write to mailto:ops@example.com.", LINK, id="mailto"),
            pytest.param("<!channel> revenue fell.", MENTION, id="channel"),
            pytest.param("<!here|here> revenue fell.", MENTION, id="here_special"),
            pytest.param("<!everyone> revenue fell.", MENTION, id="everyone"),
            pytest.param("@here revenue fell.", MENTION, id="at_here"),
            pytest.param("Revenue fell, @channel.", MENTION, id="at_channel"),
            pytest.param("@everyone: refunds rose.", MENTION, id="at_everyone"),
            pytest.param("<@U024BE7LH> please look.", MENTION, id="a_user"),
            pytest.param("Ask in <#C024BE7LR>.", MENTION, id="a_channel_link"),
            pytest.param("Page <!subteam^S012|@oncall>.", MENTION,
                         id="a_user_group"),
            pytest.param("*Revenue* fell 20.0%.", MARKUP, id="bold"),
            pytest.param("_Revenue_ fell 20.0%.", MARKUP, id="italics"),
            pytest.param("~Revenue~ fell 20.0%.", MARKUP, id="strike"),
            pytest.param("`payments` fell.", MARKUP, id="code"),
            pytest.param("<b>Revenue</b> fell.", MARKUP, id="an_html_tag"),
            pytest.param("See [the summary](/api/v1/summaries).", MARKUP,
                         id="a_markdown_link"),
            pytest.param("# Revenue fell", MARKUP, id="a_heading"),
            pytest.param("> Revenue fell", MARKUP, id="a_quote"),
        ],
    )  # fmt: skip
    def test_refused(self, text, why):
        assert refusal(text) == why
