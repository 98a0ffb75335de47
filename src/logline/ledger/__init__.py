"""The ledger: spans, Merkle logs, checkpoints, receipts, bundles and their verification."""
