#!/bin/sh
# azd postdeploy hook: subscribe the blob trigger to BlobCreated events, now that the
# code is deployed and the blobs_extension key exists. Idempotent.
set -eu
: "${AZURE_RESOURCE_GROUP:?run through azd, or export AZURE_RESOURCE_GROUP}"
: "${AZURE_FUNCTION_APP_NAME:?}" "${EVENT_GRID_SYSTEM_TOPIC:?}"
key=""
for attempt in 1 2 3 4 5 6; do
  key=$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
        --query "systemKeys.blobs_extension" -o tsv 2>/dev/null || true)
  [ -n "$key" ] && break
  echo "waiting for the blobs_extension key (attempt $attempt)..."; sleep 10
done
[ -n "$key" ] || { echo "no blobs_extension key: is the code deployed?" >&2; exit 1; }
az deployment group create -g "$AZURE_RESOURCE_GROUP" --name eventgrid-subscription \
  --template-file "$(dirname "$0")/../eventgrid.bicep" \
  --parameters systemTopicName="$EVENT_GRID_SYSTEM_TOPIC" functionAppName="$AZURE_FUNCTION_APP_NAME" \
               blobsExtensionKey="$key" --output none
echo "Event Grid subscription 'segment-dropped' now delivers BlobCreated events to the app."
