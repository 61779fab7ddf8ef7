// Storage for segments, run reports and the deployment package, plus the runs queue.
// The app reaches it with its managed identity only: shared-key access is off.

param name string
param location string
param tags object
param segmentsContainer string
param reportsContainer string
param deploymentContainer string
param configContainer string
param runsQueue string
param skuName string = 'Standard_ZRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: Redundancy is the skuName parameter, Standard_ZRS by default; checkov cannot see a parameter's value.
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over its public endpoint; access is Entra ID only (no shared keys).
  // checkov:skip=CKV_AZURE_59: Same reason: the public endpoint stays reachable, guarded by RBAC with shared keys disabled.
  // checkov:skip=CKV_AZURE_33: Queue classic logging needs shared-key diagnostics; use Azure Monitor diagnostic settings instead.
  // checkov:skip=CKV2_AZURE_1: Customer-managed keys are an organisational choice; Microsoft-managed encryption is on.
  // checkov:skip=CKV2_AZURE_33: Private endpoints need a VNet, which this template does not create.
  // checkov:skip=CKV2_AZURE_41: No SAS tokens are issued; shared-key (and so account SAS) access is disabled.
  // checkov:skip=CKV2_AZURE_40: Shared key authorization is disabled via allowSharedKeyAccess=false.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [segmentsContainer, reportsContainer, deploymentContainer, configContainer]: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in [runsQueue, '${runsQueue}-poison']: {
  parent: queueService
  name: queue
}]

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
