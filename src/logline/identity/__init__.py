"""Identities: Ed25519 keys, LogLine IDs, identity documents and the local keystore."""
