#!/bin/sh
# azd postprovision hook: now that the app's host name is known, let the app registration
# send people back to App Service Authentication's callback after they sign in. Idempotent.
set -eu
: "${AUTH_CLIENT_ID:?run infra/hooks/preprovision.sh first (azd does)}" "${FUNCTION_APP_URL:?}"
az ad app update --id "$AUTH_CLIENT_ID" --web-redirect-uris "$FUNCTION_APP_URL/.auth/login/aad/callback"
echo "sign-in returns to $FUNCTION_APP_URL/.auth/login/aad/callback"
