"""The HTTP side: status page, health and (later) the API, served by aiohttp."""
