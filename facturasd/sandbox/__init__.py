"""Local servers that speak the upstreams' protocols, to try facturasd offline
(`facturasd sandbox`). Not mocks of our clients: they parse the real request envelopes and
answer with the real response shapes, namespaces and faults.

    state    what the servers know (documents, set answers, faults) and count
    server   the aiohttp application: services, admin endpoints, faults, stats
    sat      SAT's ConsultaCFDIService
    dian     DIAN's WcfDianCustomerServices (GetStatus, WS-Security checked)
"""
