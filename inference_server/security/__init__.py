"""Who may call a node: API keys, the inter-node cluster secret, TLS, per-key quotas."""
