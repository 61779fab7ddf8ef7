"""The real async Key Vault client against a local HTTPS vault: challenge, cache, rotation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.errors import ConfigError, ExportError, TransientError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.retry import RetryPolicy
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from exporter.secrets import KeyVaultApiKey, key_vault_client
from tests.conftest import FAST_RETRY, LIST_ID
from tests.keyvault_server import TOKEN, FakeVault, StaticTokenCredential, serve_vault

OLD_KEY, NEW_KEY = "pk_old_key_before_rotation", "pk_new_key_after_rotation"


@pytest.fixture
async def vault(tmp_path: Path):
    fake = FakeVault({"klaviyo-api-key": OLD_KEY})
    runner, url, ca = await serve_vault(fake, tmp_path)
    credential = StaticTokenCredential()
    client = key_vault_client(url, credential, connection_verify=ca, verify_challenge_resource=False,
                              retry_total=0)  # our own retrying is under test, not the SDK's
    yield fake, client, credential
    await client.close()
    await runner.cleanup()


async def test_the_key_is_read_after_the_bearer_challenge_and_cached(vault) -> None:
    fake, client, credential = vault
    key = KeyVaultApiKey(client, "klaviyo-api-key")
    assert await key.get() == OLD_KEY
    assert await key.get() == OLD_KEY
    assert [auth for _, auth in fake.requests] == [None, f"Bearer {TOKEN}"]  # challenged once, then one read
    assert credential.scopes == [("https://vault.azure.net/.default",)]


async def test_a_missing_secret_is_a_clear_error(vault) -> None:
    _, client, _ = vault
    with pytest.raises(ConfigError, match="Key Vault has no secret named 'nope'"):
        await KeyVaultApiKey(client, "nope").get()


async def test_a_401_from_klaviyo_refetches_the_rotated_key_once(vault, start_simulator, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake, client, _ = vault
    key = KeyVaultApiKey(client, "klaviyo-api-key")
    assert await key.get() == OLD_KEY  # cached before the rotation
    fake.secrets["klaviyo-api-key"] = NEW_KEY  # rotated in Key Vault...
    sim = await start_simulator(api_keys={NEW_KEY})  # ...and the old key revoked at Klaviyo
    source = tmp_path / "s.csv"
    source.write_text("email\na@x.com\nb@x.com\n")
    plan = ExportPlan("t", str(source), LIST_ID, FieldMapping("email"))
    async with KlaviyoClient(key, sim.url, retry=FAST_RETRY) as klaviyo:
        report = await run_export(plan, klaviyo, RejectsFile(tmp_path / "r.csv"), options=PipelineOptions(poll_interval=0.02))
    assert report.status == "succeeded", report.error
    assert sim.simulator.account.member_emails(LIST_ID) == ["a@x.com", "b@x.com"]
    assert len([p for p, auth in fake.requests if auth]) == 2  # the first read and one refetch
    assert OLD_KEY not in caplog.text and NEW_KEY not in caplog.text


async def test_a_key_that_stays_refused_fails_the_run_without_a_storm(vault, start_simulator, tmp_path) -> None:
    fake, client, _ = vault
    sim = await start_simulator(api_keys={"pk_something_else"})
    source = tmp_path / "s.csv"
    source.write_text("email\na@x.com\n")
    key = KeyVaultApiKey(client, "klaviyo-api-key")
    async with KlaviyoClient(key, sim.url, retry=FAST_RETRY) as klaviyo:
        report = await run_export(ExportPlan("t", str(source), LIST_ID, FieldMapping("email")), klaviyo,
                                  RejectsFile(tmp_path / "r.csv"))
    assert report.status == "failed" and "refused the API key (401)" in (report.error or "")
    assert len([p for p, auth in fake.requests if auth]) == 2  # Key Vault was asked again after the 401...
    assert sim.simulator.stats.requests == 1  # ...but gave the same key, so Klaviyo was not asked again


QUICK = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02, budget_seconds=5)


async def test_a_key_vault_blip_is_retried_not_fatal(vault) -> None:
    fake, client, _ = vault
    fake.faults = [503, 500, 429]
    assert await KeyVaultApiKey(client, "klaviyo-api-key", retry=QUICK).get() == OLD_KEY
    assert not fake.faults


async def test_a_key_vault_outage_is_transient_so_the_host_retries_the_run(vault) -> None:
    fake, client, _ = vault
    fake.down = True
    with pytest.raises(TransientError, match="did not answer for secret 'klaviyo-api-key' after 4 attempts"):
        await KeyVaultApiKey(client, "klaviyo-api-key", retry=QUICK).get()
    assert not issubclass(TransientError, ExportError)  # run_export reports ExportErrors as failed runs


async def test_a_refused_identity_is_final_at_once(vault) -> None:
    fake, client, _ = vault
    fake.faults = [403]
    with pytest.raises(ExportError, match="denied reading secret 'klaviyo-api-key' \\(403\\)"):
        await KeyVaultApiKey(client, "klaviyo-api-key", retry=QUICK).get()


async def test_a_failed_cache_refresh_keeps_the_still_valid_key(vault, caplog) -> None:
    fake, client, _ = vault
    key = KeyVaultApiKey(client, "klaviyo-api-key", ttl_seconds=0.0, retry=QUICK)
    assert await key.get() == OLD_KEY
    fake.down = True
    assert await key.get() == OLD_KEY  # the TTL passed and Key Vault is away: the cached key goes on
    assert "cached key stays in use" in caplog.text and OLD_KEY not in caplog.text


async def test_run_export_hands_a_key_vault_outage_back_instead_of_failing(vault, simulator, tmp_path) -> None:
    fake, client, _ = vault
    fake.down = True
    source = tmp_path / "s.csv"
    source.write_text("email\na@x.com\n")
    key = KeyVaultApiKey(client, "klaviyo-api-key", retry=QUICK)
    async with KlaviyoClient(key, simulator.url, retry=FAST_RETRY) as klaviyo:
        with pytest.raises(TransientError):
            await run_export(ExportPlan("t", str(source), LIST_ID, FieldMapping("email")), klaviyo,
                             RejectsFile(tmp_path / "r.csv"))
    assert simulator.simulator.stats.requests == 0


async def test_a_key_the_management_api_stores_is_a_new_version_that_runs_read(vault) -> None:
    from exporter.manage.keys import VaultKeyWriter

    fake, client, _ = vault
    writer = VaultKeyWriter(client)
    first = await writer.store("klaviyo-connection-eu", "pk_first_version_key")
    second = await writer.store("klaviyo-connection-eu", "pk_second_version_key")
    assert first != second and len(first) == 32
    assert await KeyVaultApiKey(client, "klaviyo-connection-eu", version=first).get() == "pk_first_version_key"
    assert await KeyVaultApiKey(client, "klaviyo-connection-eu", version=second).get() == "pk_second_version_key"
    assert await KeyVaultApiKey(client, "klaviyo-connection-eu").get() == "pk_second_version_key"  # newest


async def test_an_identity_that_may_not_set_secrets_is_told_which_role_it_needs(vault) -> None:
    from exporter.manage.keys import VaultKeyWriter

    fake, client, _ = vault
    fake.refuse_writes = True
    with pytest.raises(ExportError, match="needs the custom secret-writer role"):
        await VaultKeyWriter(client).store("klaviyo-connection-eu", "pk_some_key_value")
