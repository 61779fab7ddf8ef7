// The function app on Flex Consumption with a user-assigned identity and identity-based
// host storage: no keys or key-bearing connection strings in its app settings.

param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageName string
param storageBlobEndpoint string
param deploymentContainer string
param pythonVersion string
param instanceMemoryMB int
param maximumInstanceCount int
param appInsightsConnectionString string
param keyVaultUri string
param klaviyoSecretName string
param klaviyoBaseUrl string
param exportSchedule string
param exportsConfigUrl string
param segmentsContainer string
param reportsContainer string
param runsQueue string
param runTimeBudgetSeconds int
param runDeadlineSeconds int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption instances are placed by the platform; zone redundancy is a per-region opt-in, not a plan setting here.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; timer, queue and Event Grid triggers tolerate a cold start, so no always-ready instance is paid for.
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health-check path; the platform restarts failed instances and the failed-run alert covers the app.
  // checkov:skip=CKV_AZURE_56: App Service Authentication would block the Event Grid webhook; HTTP functions use function keys (never anonymous).
  // checkov:skip=CKV_AZURE_222: Flex Consumption without VNet integration serves its HTTP API publicly, behind function keys.
  // checkov:skip=CKV_AZURE_221: Same reason as CKV_AZURE_222.
  // checkov:skip=CKV_AZURE_17: Client certificates would block the Event Grid webhook and curl users; function keys authenticate callers.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'exporter'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'EXPORT_SCHEDULE'
          value: exportSchedule
        }
        {
          name: 'EXPORTS_CONFIG_URL'
          value: exportsConfigUrl
        }
        {
          name: 'KEY_VAULT_URL'
          value: keyVaultUri
        }
        {
          name: 'KLAVIYO_SECRET_NAME'
          value: klaviyoSecretName
        }
        {
          name: 'KLAVIYO_BASE_URL'
          value: klaviyoBaseUrl
        }
        {
          name: 'SEGMENTS_CONTAINER'
          value: segmentsContainer
        }
        {
          name: 'REPORTS_CONTAINER'
          value: reportsContainer
        }
        {
          name: 'RUNS_QUEUE'
          value: runsQueue
        }
        {
          name: 'RUN_TIME_BUDGET_SECONDS'
          value: string(runTimeBudgetSeconds)
        }
        {
          name: 'RUN_DEADLINE_SECONDS'
          value: string(runDeadlineSeconds)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output hostName string = site.properties.defaultHostName
