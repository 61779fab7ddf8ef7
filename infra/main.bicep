// One deployment for the whole exporter: storage, Key Vault, monitoring, the Flex
// Consumption function app with its identity and roles, and the Event Grid system topic.
// The BlobCreated subscription needs the app's blobs_extension key, which exists only
// after the code is deployed: infra/eventgrid.bicep, run by the azd postdeploy hook.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd AZURE_ENV_NAME); prefixes every resource name.')
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Python version of the function app (the one CI tests on).')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('E-mail that receives the failed-run alert (empty: no receiver).')
param alertEmail string = ''

@secure()
@description('Klaviyo private API key (pk_...); when given, stored as the Key Vault secret.')
param klaviyoApiKey string = ''

@description('Name of the Key Vault secret holding the Klaviyo API key.')
param klaviyoSecretName string = 'klaviyo-api-key'

@description('Klaviyo API base URL.')
param klaviyoBaseUrl string = 'https://a.klaviyo.com'

@description('NCRONTAB schedule of the refresh timer.')
param exportSchedule string = '0 0 */6 * * *'

@description('Seconds a worker runs before handing the rest of a run to a continuation.')
param runTimeBudgetSeconds int = 1500

@description('Seconds after its first leg began that a run still going fails and frees its export.')
param runDeadlineSeconds int = 21600

@description('Client id of the Entra ID app registration people sign in with and whose app roles (Exporter.Admin, Exporter.Contributor) they hold; infra/hooks/preprovision.sh creates it. Empty: no sign-in, function keys only.')
param authClientId string = ''

@description('Storage redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

var suffix = uniqueString(subscription().id, resourceGroup().id, environmentName)
var tags = {
  'azd-env-name': environmentName
  application: 'klaviyo-segment-exporter'
}
var segmentsContainer = 'segments'
var reportsContainer = 'reports'
var deploymentContainer = 'app-package-${suffix}'
var configContainer = 'config'
var runsQueue = 'export-runs'
var storageName = take('st${replace(environmentName, '-', '')}${suffix}', 24)
var appName = 'func-${environmentName}-${suffix}'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${environmentName}-${suffix}'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageName
    location: location
    tags: tags
    segmentsContainer: segmentsContainer
    reportsContainer: reportsContainer
    deploymentContainer: deploymentContainer
    configContainer: configContainer
    runsQueue: runsQueue
    skuName: storageSku
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: take('kv-${environmentName}-${suffix}', 24)
    location: location
    tags: tags
    secretName: klaviyoSecretName
    klaviyoApiKey: klaviyoApiKey
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: 'log-${environmentName}-${suffix}'
    appInsightsName: 'appi-${environmentName}-${suffix}'
    actionGroupName: 'ag-${environmentName}-${suffix}'
    alertEmail: alertEmail
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: appName
    planName: 'plan-${environmentName}-${suffix}'
    location: location
    tags: tags
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainer: deploymentContainer
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: keyVault.outputs.uri
    klaviyoSecretName: klaviyoSecretName
    klaviyoBaseUrl: klaviyoBaseUrl
    exportSchedule: exportSchedule
    exportsConfigUrl: '${storage.outputs.blobEndpoint}${configContainer}/exports.json'
    segmentsContainer: segmentsContainer
    reportsContainer: reportsContainer
    runsQueue: runsQueue
    runTimeBudgetSeconds: runTimeBudgetSeconds
    runDeadlineSeconds: runDeadlineSeconds
    authClientId: authClientId
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: identity.properties.principalId
    storageName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: 'appi-${environmentName}-${suffix}'
  }
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${environmentName}-${suffix}'
  location: location
  tags: tags
  properties: {
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
  dependsOn: [
    storage
  ]
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.hostName}'
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output SEGMENTS_CONTAINER string = segmentsContainer
output CONFIG_BLOB_URL string = '${storage.outputs.blobEndpoint}${configContainer}/exports.json'
output KEY_VAULT_NAME string = keyVault.outputs.name
output KLAVIYO_SECRET_NAME string = klaviyoSecretName
output EVENT_GRID_SYSTEM_TOPIC string = systemTopic.name
output AUTH_CLIENT_ID string = authClientId
output APPLICATIONINSIGHTS_NAME string = 'appi-${environmentName}-${suffix}'
