"""The HTTP server: REST API, live stream, authentication, limits (see server.app)."""
