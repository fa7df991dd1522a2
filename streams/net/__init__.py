"""Network and TLS: the throw-away certificate authority (tls)."""
