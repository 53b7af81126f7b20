"""The web face: the admin HTTP API (/api/v1), the practice dashboard, /health and /metrics.

One module per resource, each with its own `RouteTableDef`; `errors` is the one catalogue
of named JSON errors and the error middleware, `auth` the bearer token, the dashboard's
sessions and CSRF; `openapi.json` describes the API and a test holds it to the routes.
Handlers reach the running bridge only through `deps.WebDeps`, which the installer
(`bridge.features.http`) builds; nothing here imports the application.
"""

#: Where the admin API lives.
API = "/api/v1"
