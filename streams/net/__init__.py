"""Network and TLS: the throw-away certificate authority (tls), and the probes that say why a
connection fails at TLS (probe)."""
