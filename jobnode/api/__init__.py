"""jobnode's HTTP API (aiohttp): routes, error mapping and the OpenAPI document."""
