"""Authentication for the API: roles, password hashing, JWTs, users, the login throttle,
peer signatures and TLS.

`setup` makes a node's authenticator at start (the wiring calls it); the login route and
the middleware that checks each route's role live in `jobnode.api.auth_routes` and
`jobnode.api.access`.
"""
