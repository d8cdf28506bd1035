"""Authentication for the API: roles, password hashing, JWTs, users and the login throttle.

The HTTP side (the login route, the middleware that checks each route's role) lives in
`jobnode.api.access` and `jobnode.api.auth_routes`; this package has no aiohttp in it.
"""
