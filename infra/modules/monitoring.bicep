// Log Analytics + Application Insights (Entra ID ingestion only), and the alert on failed runs.

param location string
param tags object
param workspaceName string
param appInsightsName string
param actionGroupName string
param alertEmail string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'exportfail'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'owner'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Every run event is one trace whose message is "export_run " + a JSON object of fields
// (exporter/runs/events.py); these queries read the fields, and tests/test_operations.py pins
// every field they name to a record the app really emits.
var runEvents = 'traces | where message startswith "export_run " | extend run = parse_json(substring(message, 11))'

// The alert: a run whose status is failed.
resource failedRunsAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${appInsightsName}-failed-export-runs'
  location: location
  tags: tags
  properties: {
    displayName: 'Klaviyo export run failed'
    description: 'An export run ended with status failed; its report in the reports container says why.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: '${runEvents} | where tostring(run.status) == "failed" | project timestamp, export = tostring(run.export), run_id = tostring(run.run_id), error = tostring(run.error)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// The workbook: runs per export over time, rows sent / rejected / unchanged, failures with
// their reasons, and each run's duration against Klaviyo's rate-limit floor for its size
// (one job per 10,000 profiles; 10 jobs/s burst, 150/min steady).
var workbookQueries = [
  {
    title: 'Runs per export'
    query: '${runEvents} | where tostring(run.event) in ("finished", "failed") | summarize runs = count() by export = tostring(run.export), bin(timestamp, 1h)'
    visualization: 'timechart'
  }
  {
    title: 'Rows sent, rejected and unchanged'
    query: '${runEvents} | where tostring(run.event) in ("finished", "failed") | summarize sent = sum(toint(run.sent)), rejected = sum(toint(run.rejected)), unchanged = sum(toint(run.unchanged)), duplicates = sum(toint(run.duplicates)) by bin(timestamp, 1h)'
    visualization: 'barchart'
  }
  {
    title: 'Failures and their reasons'
    query: '${runEvents} | where tostring(run.status) == "failed" | project timestamp, export = tostring(run.export), run_id = tostring(run.run_id), leg = toint(run.leg), trigger = tostring(run.trigger), error = tostring(run.error) | order by timestamp desc'
    visualization: 'table'
  }
  {
    title: 'Duration against the rate-limit floor'
    query: '${runEvents} | where tostring(run.event) == "finished" | extend jobs = toint(run.klaviyo_jobs) | extend floor_s = iff(jobs <= 1, 0.0, max_of((jobs - 1) / 10 * 1.0, (jobs - 1) / 150 * 60.0)) | project timestamp, export = tostring(run.export), duration_s = todouble(run.duration_s), floor_s, profiles_per_s = todouble(run.profiles_per_s), throttled_429s = toint(run.throttled_429s)'
    visualization: 'table'
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsName, 'export-runs-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Klaviyo export runs'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string({
      version: 'Notebook/1.0'
      items: [for (item, i) in workbookQueries: {
        type: 3
        name: 'query-${i}'
        content: {
          version: 'KqlItem/1.0'
          title: item.title
          query: item.query
          size: 0
          timeContext: {
            durationMs: 604800000
          }
          queryType: 0
          resourceType: 'microsoft.insights/components'
          visualization: item.visualization
        }
      }]
      isLocked: false
    })
  }
}

output appInsightsId string = appInsights.id
output connectionString string = appInsights.properties.ConnectionString
