"""Connections and exports as people manage them: who is calling, what their role allows,
the exports document edited safely, keys written to the vault, and an audit of every change.

Free of ``azure.functions``: the routes in ``function_app.py`` hand each request over as
plain data (``manage.routes``) and send back what it answers.
"""
