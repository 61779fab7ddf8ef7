// Key Vault for the Klaviyo API key: RBAC authorization, soft delete, purge protection.

param name string
param location string
param tags object
param secretName string
@secure()
param klaviyoApiKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration reads the vault over its public endpoint; access is RBAC-only for the app's identity.
  // checkov:skip=CKV_AZURE_189: Same reason: public network access stays enabled, guarded by Entra ID and RBAC.
  // checkov:skip=CKV2_AZURE_32: Private endpoints need a VNet, which this template does not create.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(klaviyoApiKey)) {
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov reads a conditional (if) resource's properties one level too high.
  // checkov:skip=CKV_AZURE_41: A Klaviyo private key has no expiry; an expiry date here would silently stop every export. Rotate by setting a new version.
  parent: vault
  name: secretName
  properties: {
    value: klaviyoApiKey
    contentType: 'text/plain'
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
