"""jobnode's HTTP API (aiohttp): routes, access control, error mapping and the OpenAPI document.

Routes reach the node only through the services (jobnode.services), under the typed keys
of `appkeys`; below the services the API uses core, auth and observability and nothing else.
"""
