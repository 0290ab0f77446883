"""The simulated Microsoft cloud: Entra authority (MSAL over TLS), Graph, Azure Resource
Manager and Partner Center."""
