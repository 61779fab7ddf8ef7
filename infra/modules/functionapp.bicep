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
@description('Client id of the Entra ID app registration people sign in with (infra/hooks/preprovision.sh makes it); empty: no sign-in.')
param authClientId string

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
  // checkov:skip=CKV_AZURE_56: App Service Authentication is on, in the authsettingsV2 resource below (this check reads only the legacy siteConfig.authSettings).
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

// App Service Authentication with Microsoft Entra ID. Unauthenticated requests still reach
// the app (AllowAnonymous) because automation calls the run routes with function keys and
// Event Grid calls the blob webhook with its system key; the Functions host checks those
// keys, and every route for people (/api/manage/...) refuses a request without a signed-in
// principal itself. With authentication on, the platform strips any X-MS-CLIENT-PRINCIPAL a
// client sends and sets its own, so the app can believe the header.
resource authentication 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(authClientId)) {
  // checkov:skip=CKV_AZURE_13: This resource is App Service Authentication (authsettingsV2, platform enabled); the check reads the legacy authsettings shape.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a 'web' config setting, not an authsettingsV2 one; the app logs requests to Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are a 'web' config setting, not an authsettingsV2 one.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a 'web' config setting, not an authsettingsV2 one; failures go to Application Insights.
  // checkov:skip=CKV_AZURE_70: HTTPS-only is the site's setting (httpsOnly: true above); here httpSettings.requireHttps is true.
  // checkov:skip=CKV_AZURE_80: A Python app: no .NET Framework.
  // checkov:skip=CKV_AZURE_88: Flex Consumption mounts no Azure Files share; state lives in blob storage.
  // checkov:skip=CKV_AZURE_222: Same reason as on the site: the HTTP API is public, behind keys and sign-in.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: true
      }
      cookieExpiration: {
        convention: 'FixedTime'
        timeToExpiration: '08:00:00'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
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
