"""Consent-aware subscribe through the real path (the CLI and the function app, the
simulator): exactly the rows whose consent is newer than any opt-out are subscribed, on the
channels mapped; nobody's opt-out is lifted; conflicts are counted and listed without values."""

from __future__ import annotations

import asyncio
import csv
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.conftest import API_KEY, LIST_ID
from tests.test_cli import acli

FUTURE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
SEGMENT = (
    "email,phone,email_opt_in,email_at,sms_opt_in,sms_at\n"
    "a@example.com,,yes,2026-01-01T09:00:00Z,,\n"                       # subscribed
    "b@example.com,,TRUE,2026-01-01,,\n"                                 # opted out since: stays out
    "c@example.com,,1,2026-09-01T00:00:00+00:00,,\n"                     # opted out before consenting: subscribed
    "d@example.com,+44 20 7946 0011,no,,subscribed,2026-02-01\n"         # SMS only
    "e@example.com,,yes,,,\n"                                            # consent without a time
    "f@example.com,,,,,\n"                                               # no consent: joins, never subscribed
    f"g@example.com,,yes,{FUTURE},,\n"                                   # consent dated in the future
    "h@example.com,,,,yes,2026-01-01\n"                                  # SMS consent without a phone
)
CONSENT = ["--consent", "email=email_opt_in,email_at", "--consent", "sms=sms_opt_in,sms_at"]


def sim_post(sim, path: str, body: dict) -> None:
    request = urllib.request.Request(f"{sim.url}{path}", data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


def consent_of(sim, email: str) -> dict:
    account = sim.simulator.account
    [profile_id] = account.profile_ids_by_email([email])
    return account.consent(profile_id).resource()


async def test_the_cli_subscribes_exactly_the_rows_whose_consent_is_newest(simulator, tmp_path: Path) -> None:
    opt_outs = [("b@example.com", "2026-06-01T00:00:00+00:00"), ("c@example.com", "2026-06-01T00:00:00+00:00")]
    for email, when in opt_outs:
        await asyncio.to_thread(sim_post, simulator, "/_sim/profiles/opt-out",
                                {"email": email, "channel": "email", "timestamp": when, "suppression": "UNSUBSCRIBE"})
    source = tmp_path / "consent.csv"
    source.write_text(SEGMENT)
    args = ["export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email",
            "--map", "phone=phone_number", "--phone-region", "GB", *CONSENT, "--klaviyo-url", simulator.url,
            "--state", str(tmp_path / "state"), "--report", str(tmp_path / "out" / "report.json")]
    result = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    c = report["counts"]
    assert (c["sent"], c["subscribed"], c["consent_conflicts"]) == (8, 3, 1)
    email = {e: consent_of(simulator, e)["email"]["marketing"] for e in "abcdefgh" for e in [f"{e}@example.com"]}
    assert [e for e, m in email.items() if m["consent"] == "SUBSCRIBED"] == ["a@example.com", "c@example.com"]
    assert email["b@example.com"]["consent"] == "UNSUBSCRIBED"  # the newer opt-out stays, and so does its suppression
    assert [s["reason"] for s in email["b@example.com"]["suppression"]] == ["UNSUBSCRIBE"]
    assert email["c@example.com"]["suppression"] == []  # consent newer than the opt-out: Klaviyo lifts it
    assert email["a@example.com"]["consent_timestamp"] == "2026-01-01T09:00:00+00:00"
    assert email["a@example.com"]["custom_method_detail"] == "Klaviyo segment exporter: cli"
    sms = consent_of(simulator, "d@example.com")["sms"]["marketing"]
    assert sms["consent"] == "SUBSCRIBED" and consent_of(simulator, "h@example.com")["sms"]["marketing"]["consent"] \
        == "NEVER_SUBSCRIBED"
    assert len(simulator.simulator.account.member_emails(LIST_ID)) == 8  # everyone joins the list
    rows = list(csv.reader(Path(report["rejects"]).read_text().splitlines()))[1:]
    reasons = {int(line): (column, reason) for line, column, reason in rows}
    assert reasons[3][0] == "email_opt_in" and "newer than the row's consented_at" in reasons[3][1]
    assert reasons[6] == ("email_at", "email consent without a readable email_at (ISO 8601); not subscribed")
    assert "in the future" in reasons[8][1] and "without a valid phone" in reasons[9][1]
    assert "@" not in Path(report["rejects"]).read_text()  # reasons and columns only, never values

    again = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})  # a delta rerun: nothing sent, nobody subscribed again
    second = orjson.loads(again.stdout)["counts"]
    assert (second["sent"], second["unchanged"], second["subscribed"]) == (0, 8, 0)
    assert simulator.simulator.stats.subscriptions_received == 3


def test_a_subscription_job_matches_klaviyos_schema() -> None:
    from exporter.klaviyo.consent import subscription_job
    from exporter.mapping.consent import Consent
    from tests.openapi import validator_for

    body = subscription_job("L1", "Klaviyo segment exporter: vip", [
        (Consent(2, "a@x.com", "+442079460011", {"email": "2026-01-01T00:00:00+00:00",
                                                  "sms": "2026-01-01T00:00:00+00:00"}), ["email", "sms"]),
        (Consent(3, "b@x.com", None, {"email": "2026-01-01T00:00:00+00:00"}), ["email"])])
    validator_for("SubscriptionCreateJobCreateQuery").validate(orjson.loads(body))


@pytest.mark.parametrize("document, problem", [
    ({"push": {"column": "a", "consented_at": "b"}}, "'consent' maps"),
    ({"email": {"column": "a"}}, "needs \"column\" and \"consented_at\""),
    ({"email": "yes"}, "needs \"column\" and \"consented_at\""),
])
def test_a_consent_mapping_of_the_wrong_shape_is_refused(document: dict, problem: str) -> None:
    from tests.test_config import assert_one_export_refused

    assert_one_export_refused(problem, consent=document)


async def test_the_app_subscribes_with_consent_from_the_export(app) -> None:
    import function_app
    from tests.app_harness import call, config, post, status_of

    document = config()
    document["exports"][0]["consent"] = {"email": {"column": "email_opt_in", "consented_at": "email_at"}}
    document["exports"][0]["mapping"] = {"email": "email"}
    await app.set_config(document)
    await asyncio.to_thread(sim_post, app.sim, "/_sim/profiles/opt-out",
                            {"email": "b@example.com", "channel": "email", "timestamp": "2026-06-01T00:00:00Z",
                             "suppression": "UNSUBSCRIBE"})
    await app.put(app.segments, "vip/consent.csv", SEGMENT.encode())
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    await app.deliver()
    report = (await status_of("vip", answer["run_id"]))["report"]
    assert report["status"] in ("succeeded", "partial") and report["counts"]["subscribed"] == 2  # a and c
    assert report["counts"]["consent_conflicts"] == 1
    assert consent_of(app.sim, "a@example.com")["email"]["marketing"]["consent"] == "SUBSCRIBED"
    assert consent_of(app.sim, "b@example.com")["email"]["marketing"]["consent"] == "UNSUBSCRIBED"


async def post_subscriptions(sim, body: dict) -> int:
    import aiohttp

    from exporter.klaviyo.limits import JSONAPI, REVISION

    headers = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION, "Content-Type": JSONAPI}
    async with aiohttp.ClientSession() as session, session.post(
            f"{sim.url}/api/profile-subscription-bulk-create-jobs", data=orjson.dumps(body), headers=headers) as answer:
        return answer.status


def job(profiles: list[dict], historical: bool = True) -> dict:
    return {"data": {"type": "profile-subscription-bulk-create-job",
                     "attributes": {"historical_import": historical, "profiles": {"data": [
                         {"type": "profile", "attributes": p} for p in profiles]}},
                     "relationships": {"list": {"data": {"type": "list", "id": LIST_ID}}}}}


def email_sub(email: str, at: str | None = "2026-01-01T00:00:00Z") -> dict:
    marketing: dict = {"consent": "SUBSCRIBED"}
    if at is not None:
        marketing["consented_at"] = at
    return {"email": email, "subscriptions": {"email": {"marketing": marketing}}}


@pytest.mark.parametrize("body", [
    job([email_sub("a@x.com", None)]),                                     # historical without consented_at
    job([email_sub("a@x.com", FUTURE + "T00:00:00Z")]),                     # consent in the future
    job([{"subscriptions": {"sms": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2026-01-01"}}},
          "phone_number": "020 7946 0011"}]),                               # SMS without an E.164 phone
    job([email_sub(f"u{i}@x.com") for i in range(1_001)]),                 # past 1,000 profiles
    job([{"email": "a@x.com", "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}]),
])
async def test_the_simulators_subscription_endpoint_is_strict(simulator, body: dict) -> None:
    assert await post_subscriptions(simulator, body) == 400
    assert simulator.simulator.stats.subscriptions_received == 0


async def test_subscribing_lifts_only_the_suppressions_klaviyo_documents(simulator) -> None:
    account = simulator.simulator.account
    account.opt_out("a@x.com", "email", "2025-01-01T00:00:00Z", "UNSUBSCRIBE")
    account.opt_out("b@x.com", "email", "2025-01-01T00:00:00Z", "HARD_BOUNCE")
    assert await post_subscriptions(simulator, job([email_sub("a@x.com"), email_sub("b@x.com")])) == 202
    assert consent_of(simulator, "a@x.com")["email"]["marketing"]["suppression"] == []
    assert [s["reason"] for s in consent_of(simulator, "b@x.com")["email"]["marketing"]["suppression"]] == \
        ["HARD_BOUNCE"]
    assert await post_subscriptions(simulator, job([email_sub("c@x.com", None)], historical=False)) == 202
    assert consent_of(simulator, "c@x.com")["email"]["marketing"]["consent"] == "PENDING"  # double opt-in


async def test_a_damaged_records_consent_subscribes_nobody(simulator, tmp_path: Path) -> None:
    """A stray quote swallows the next line into one record: whatever its columns now say,
    that record's consent is no evidence."""
    source = tmp_path / "damaged.csv"
    source.write_text("email,note,email_opt_in,email_at\n"
                      'a@example.com,"stray,yes,2026-01-01\n'
                      'b@example.com,x"y,yes,2026-01-01\n'
                      "c@example.com,fine,yes,2026-01-01\n")
    result = await acli("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email",
                        "--consent", "email=email_opt_in,email_at", "--klaviyo-url", simulator.url,
                        "--state", str(tmp_path / "state"), env={"KLAVIYO_API_KEY": API_KEY})
    report = orjson.loads(result.stdout)
    assert report["counts"]["subscribed"] == 1
    assert consent_of(simulator, "c@example.com")["email"]["marketing"]["consent"] == "SUBSCRIBED"
    assert consent_of(simulator, "a@example.com")["email"]["marketing"]["consent"] == "NEVER_SUBSCRIBED"
    assert "its consent is no evidence" in Path(report["rejects"]).read_text()
