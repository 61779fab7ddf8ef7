"""The Bicep in infra/ parses, and provisions what the code needs, safely.

Checks run on pycep-parser's syntax tree: every app setting the code reads is set; each
role the identity needs is assigned on the right resource; no setting carries a storage
key; HTTPS, TLS 1.2 and FTPS-off hold. Each check is also run on a broken copy of the
template, so a check that cannot fail would be caught.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from lark.exceptions import LarkError
from pycep import BicepParser

from exporter.settings import LOCAL_ONLY, SETTINGS

INFRA = Path(__file__).resolve().parent.parent / "infra"
FUNCTION_APP = INFRA / "modules" / "functionapp.bicep"
ROLES = INFRA / "modules" / "roles.bicep"
STORAGE = INFRA / "modules" / "storage.bicep"
KEY_VAULT = INFRA / "modules" / "keyvault.bicep"
IDENTITY_STORAGE = {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId"}
REQUIRED_ROLES = {
    ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Microsoft.Storage/storageAccounts"),  # Storage Blob Data Owner
    ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Microsoft.Storage/storageAccounts"),  # Storage Queue Data Contributor
    ("4633458b-17de-408a-b874-0445c86b69e6", "Microsoft.KeyVault/vaults"),  # Key Vault Secrets User
    ("3913510d-42f4-4e42-8a64-420c390055eb", "Microsoft.Insights/components"),  # Monitoring Metrics Publisher
    ("secretWriterRole", "Microsoft.KeyVault/vaults"),  # the custom role that only sets secrets
}


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def site_config(tree: dict[str, Any]) -> dict[str, Any]:
    [site] = [r["config"] for r in tree["resources"].values() if r["type"] == "Microsoft.Web/sites"]
    return site


def setting_problems(tree: dict[str, Any]) -> list[str]:
    site = site_config(tree)
    settings = {s["name"]: s["value"] for s in site["properties"]["siteConfig"]["appSettings"]}
    problems = [f"app setting {name} is not set by infra" for name in
                sorted({s.name for s in SETTINGS} | IDENTITY_STORAGE) if name not in settings]
    problems += [f"app setting {s.name} is for local runs only, yet infra sets it" for s in LOCAL_ONLY if s.name in settings]
    for name, value in settings.items():
        text = json.dumps(value)
        if name == "AzureWebJobsStorage" or any(k in text for k in ("AccountKey", "listKeys", "SharedAccessSignature")):
            problems.append(f"app setting {name} carries a storage key or key-based connection string")
    return problems


def transport_problems(tree: dict[str, Any]) -> list[str]:
    site = site_config(tree)
    config = site["properties"]["siteConfig"]
    problems = []
    if site["properties"].get("httpsOnly") is not True:
        problems.append("httpsOnly is not true")
    if config.get("minTlsVersion") != "1.2":
        problems.append("minTlsVersion is not 1.2")
    if config.get("ftpsState") != "Disabled":
        problems.append("ftpsState is not Disabled")
    return problems


def role_problems(tree: dict[str, Any]) -> list[str]:
    role_ids = tree["variables"]["roles"]["value"]
    scopes = {name: r["type"] for name, r in tree["resources"].items()}
    granted = set()
    for resource in tree["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        reference = resource["config"]["properties"]["roleDefinitionId"]
        if "function" not in reference:  # a custom role defined in the template: its actions are checked below
            granted.add((reference["operator"]["operands"]["operand_1"], scopes[resource["config"]["scope"]]))
            continue
        definition = reference["function"]["parameters"]["resource_name_1"]
        role = role_ids[definition["operator"]["operands"]["operand_2"]]
        granted.add((role, scopes[resource["config"]["scope"]]))
    return [f"role {role} on {scope} is not assigned" for role, scope in sorted(REQUIRED_ROLES - granted)]


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    assert parse(path)["resources"] or parse(path)["modules"]


def test_every_setting_the_code_reads_is_provisioned_without_keys() -> None:
    assert setting_problems(parse(FUNCTION_APP)) == []


def test_https_tls_and_ftps_are_locked_down() -> None:
    assert transport_problems(parse(FUNCTION_APP)) == []


def test_the_identity_has_exactly_the_roles_it_needs() -> None:
    tree = parse(ROLES)
    assert role_problems(tree) == []
    assert len([r for r in tree["resources"].values() if r["type"] == "Microsoft.Authorization/roleAssignments"]) == 5


def test_the_identity_may_write_secrets_and_nothing_more() -> None:
    """The management API stores keys; no built-in role sets secrets without also deleting
    and purging them, so a custom role grants setSecret alone, in this resource group."""
    role = parse(ROLES)["resources"]["secretWriterRole"]["config"]["properties"]
    assert role["permissions"] == [{"actions": [], "notActions": [], "notDataActions": [],
                                    "dataActions": ["Microsoft.KeyVault/vaults/secrets/setSecret/action"]}]
    assert role["assignableScopes"] == [{"function": {"type": "resource_group", "parameters": {}}, "property_name": "id"}] \
        or len(role["assignableScopes"]) == 1


def test_app_service_authentication_signs_people_in_and_lets_function_keys_through() -> None:
    [auth] = [r for r in parse(FUNCTION_APP)["resources"].values() if r["type"] == "Microsoft.Web/sites/config"]
    resource = auth["config"]["config"]  # made only when a client id is given (a conditional resource)
    config = resource["properties"]
    assert resource["name"] == "authsettingsV2" and config["platform"]["enabled"] is True
    assert config["globalValidation"] == {"requireAuthentication": False, "unauthenticatedClientAction": "AllowAnonymous"}
    entra = config["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True and entra["registration"]["clientId"] == "authClientId"
    assert config["httpSettings"]["requireHttps"] is True


def test_storage_and_key_vault_security_defaults() -> None:
    storage = parse(STORAGE)["resources"]["storage"]["config"]["properties"]
    assert (storage["minimumTlsVersion"], storage["allowBlobPublicAccess"], storage["allowSharedKeyAccess"]) == (
        "TLS1_2", False, False)
    blob = parse(STORAGE)["resources"]["blobService"]["config"]["properties"]
    assert blob["deleteRetentionPolicy"]["enabled"] is True
    vault = parse(KEY_VAULT)["resources"]["vault"]["config"]["properties"]
    assert (vault["enableRbacAuthorization"], vault["enableSoftDelete"], vault["enablePurgeProtection"]) == (True, True, True)


def mutated(tmp_path: Path, source: Path, old: str, new: str) -> dict[str, Any]:
    text = source.read_text()
    assert old in text
    copy = tmp_path / f"{len(list(tmp_path.iterdir()))}-{source.name}"  # a new path: parse() caches by path
    copy.write_text(text.replace(old, new, 1))
    return parse(copy)


def test_the_checks_catch_a_broken_template(tmp_path: Path) -> None:
    assert "app setting RUNS_QUEUE is not set by infra" in setting_problems(
        mutated(tmp_path, FUNCTION_APP, "name: 'RUNS_QUEUE'", "name: 'RUNS_QUEUE_TYPO'"))
    keyed = mutated(tmp_path, FUNCTION_APP, "value: 'managedidentity'",
                    "value: 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc'")
    assert any("carries a storage key" in p for p in setting_problems(keyed))
    queue_setting = "name: 'RUNS_QUEUE'\n          value: runsQueue\n        }"
    local = mutated(tmp_path, FUNCTION_APP, queue_setting, queue_setting + "\n        {\n          name: 'EXPORTER_LOCAL_MODE'"
                    "\n          value: 'true'\n        }")
    assert setting_problems(local) == ["app setting EXPORTER_LOCAL_MODE is for local runs only, yet infra sets it"]
    assert transport_problems(mutated(tmp_path, FUNCTION_APP, "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'")) == [
        "ftpsState is not Disabled"]
    assert transport_problems(mutated(tmp_path, FUNCTION_APP, "httpsOnly: true", "httpsOnly: false")) == [
        "httpsOnly is not true"]
    assert role_problems(mutated(tmp_path, ROLES, "scope: vault", "scope: storage")) == [
        "role 4633458b-17de-408a-b874-0445c86b69e6 on Microsoft.KeyVault/vaults is not assigned"]


def test_a_syntax_error_fails_the_parse(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("resource x 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'a'\n")
    with pytest.raises(LarkError):
        parse(broken)
