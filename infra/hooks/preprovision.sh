#!/bin/sh
# azd preprovision hook: the Microsoft Entra ID app registration people sign in with.
# Bicep cannot create app registrations (they live in Microsoft Graph, not Azure Resource
# Manager), so this does, with the signed-in az user's rights (Application Developer is
# enough). Idempotent: it finds the registration by name and updates it.
#
#   - two app roles people and groups are assigned to: Exporter.Admin, Exporter.Contributor
#     (Enterprise applications > the app > Users and groups; see README);
#   - an API scope 'user_impersonation' and the Azure CLI pre-authorized for it, so
#     `klaviyo-export app` can sign in with `az login` (AzureCliCredential);
#   - ID tokens for App Service Authentication's browser sign-in (no client secret);
#   - its client id in the azd environment as AUTH_CLIENT_ID, which main.bicep reads.
set -eu
: "${AZURE_ENV_NAME:?run through azd, or export AZURE_ENV_NAME (the environment name the deployment uses)}"
name="klaviyo-exporter-${AZURE_ENV_NAME}"
admin_role=6a1f6c1e-3f6b-4f43-9a53-8f0e1f5a0a01        # fixed ids: a re-run updates the roles,
contributor_role=6a1f6c1e-3f6b-4f43-9a53-8f0e1f5a0a02  # never duplicates them
scope_id=6a1f6c1e-3f6b-4f43-9a53-8f0e1f5a0a03
azure_cli=04b07795-8ddb-461a-bbee-02f9e1bf7b46          # Microsoft's Azure CLI client id

app_id=$(az ad app list --display-name "$name" --query "[0].appId" -o tsv)
if [ -z "$app_id" ]; then
  app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
           --enable-id-token-issuance true --query appId -o tsv)
  echo "created app registration $name ($app_id)"
fi
object_id=$(az ad app show --id "$app_id" --query id -o tsv)
roles=$(cat <<JSON
[{"id":"$admin_role","allowedMemberTypes":["User","Application"],"displayName":"Exporter.Admin","value":"Exporter.Admin","isEnabled":true,
  "description":"Sets up Klaviyo connections (who may use them, the key, the privacy agreement) and may do everything."},
 {"id":"$contributor_role","allowedMemberTypes":["User","Application"],"displayName":"Exporter.Contributor","value":"Exporter.Contributor","isEnabled":true,
  "description":"Adds, changes and runs exports on the connections an administrator lets them use."}]
JSON
)
az ad app update --id "$app_id" --app-roles "$roles" --identifier-uris "api://$app_id"
api=$(cat <<JSON
{"api":{"oauth2PermissionScopes":[{"id":"$scope_id","value":"user_impersonation","type":"User","isEnabled":true,
  "adminConsentDisplayName":"Use the Klaviyo exporter","adminConsentDescription":"Use the Klaviyo exporter as the signed-in user.",
  "userConsentDisplayName":"Use the Klaviyo exporter","userConsentDescription":"Use the Klaviyo exporter as you."}],
  "preAuthorizedApplications":[{"appId":"$azure_cli","delegatedPermissionIds":["$scope_id"]}]}}
JSON
)
az rest --method PATCH --uri "https://graph.microsoft.com/v1.0/applications/$object_id" \
  --headers "Content-Type=application/json" --body "$api" --output none
az ad sp show --id "$app_id" --output none 2>/dev/null || az ad sp create --id "$app_id" --output none
if command -v azd >/dev/null 2>&1 && [ -n "${AZD_ENVIRONMENT:-${AZURE_ENV_NAME:-}}" ] && azd env get-values >/dev/null 2>&1; then
  azd env set AUTH_CLIENT_ID "$app_id"
fi
echo "app registration $name ready: AUTH_CLIENT_ID=$app_id (without azd: pass authClientId=$app_id to the deployment)"
