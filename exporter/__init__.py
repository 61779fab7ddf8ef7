"""Stream customer segments from Azure Blob Storage into Klaviyo lists.

The pipeline reads like the package tree: ``sources`` -> ``mapping`` -> ``batching`` ->
``klaviyo``, orchestrated by ``pipeline`` and accounted for in ``report``.
"""
